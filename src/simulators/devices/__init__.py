"""Byte-level emulators of the bench's serial devices, reachable in-process through a PyMeasure
adapter or as TCP servers on 127.0.0.1."""

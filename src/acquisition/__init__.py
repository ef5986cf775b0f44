"""Bench config, scan plans, the runner and chip-to-stage alignment. Filled by the acquisition
issue; empty until then."""

"""Instrument drivers (PyMeasure over PyVISA, pypylon) and the small device protocols the rest of
the code types against. Filled by the instruments issue; empty until then."""

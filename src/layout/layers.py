"""Every GDS layer the project writes, declared once.

Only ``SILICON`` is fabricated by default: the a-Si film is etched wherever it has polygons, so the
unit-cell geometry *and* the fiducial marks (which must be visible to the microscope) live there,
and DRC runs on it. Labels are on a layer of their own so a fab can expose them or not.
"""

from __future__ import annotations

from enum import Enum


class Layer(Enum):
    """A (layer, datatype) pair with its purpose; the value is what GDS/OASIS stores."""

    SILICON = (1, 0)
    """Etched a-Si: unit-cell primitives and fiducial crosses. The DRC layer."""
    LABEL = (10, 0)
    """Array names as text polygons and GDS text; not needed for optics."""
    OUTLINE = (20, 0)
    """Array boundaries for viewers and SEM navigation; never fabricated."""

    @property
    def number(self) -> int:
        return self.value[0]

    @property
    def datatype(self) -> int:
        return self.value[1]

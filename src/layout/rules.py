"""Fabrication rules for one unit cell, in one place for the checker, the generator and DRC."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from common.values import Bounds

_LENGTH_NM = Bounds(0.0, 10_000.0, unit="nm")
RULE_BOUNDS = {"grid_nm": Bounds(1.0, 100.0, unit="nm")}  # GDS precision is 1 nm


@dataclass(frozen=True)
class DesignRules:
    """E-beam limits for a-Si metasurfaces, in nm.

    The first four are the lab's rules. The rest make the written GDS pass KLayout's 50 nm
    Euclidean width/space checks, measured on KLayout 0.30 with 1 nm polygon tolerance:

    * ``border_margin_nm``: pads of *any* two designs touch on the chip, so each primitive keeps
      half the gap from its cell border; two neighbours then always see ``min_gap_nm``.
    * ``min_tip_radius_nm``: an ellipse tip sharper than ~39 nm radius is flagged as a sub-50 nm
      feature (a 100x250 nm ellipse measures 18 nm at its tips); 40 nm keeps DRC clean.
    * ``min_hole_tip_radius_nm``: the same for a ring's hole, flagged up to ~42 nm; 45 nm is clean.
    * ``curve_allowance_nm``: curved outlines are written as polygons whose vertices snap to the
      1 nm GDS grid and whose chords cut up to the 1 nm tolerance inside the curve, so a gap or
      wall that touches a curve needs this much more than the nominal rule to survive.
    """

    min_size_nm: float = 100.0
    min_feature_nm: float = 50.0
    min_gap_nm: float = 50.0
    grid_nm: float = 5.0
    border_margin_nm: float = 25.0
    min_tip_radius_nm: float = 40.0
    min_hole_tip_radius_nm: float = 45.0
    curve_allowance_nm: float = 2.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            RULE_BOUNDS.get(name, _LENGTH_NM).check(name, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

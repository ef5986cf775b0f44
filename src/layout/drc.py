"""Design-rule check of a written layout with KLayout's own engine (``klayout.db``).

Runs 50 nm width and space checks on the silicon layer of the whole chip in KLayout's *deep*
(hierarchical) mode: each unit cell is checked once per distinct neighbourhood instead of once
per placement, and the interactions across pad borders (where different designs and periods
touch) are still seen. Space also covers notches inside one polygon (a ring's hole).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import klayout.db as kdb

from layout.layers import Layer


@dataclass(frozen=True)
class DrcMarker:
    check: str  # "width" or "space"
    x_um: float
    y_um: float
    distance_nm: float


@dataclass(frozen=True)
class DrcResult:
    markers: list[DrcMarker]
    polygons_checked: int
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.markers

    def counts(self) -> dict[str, int]:
        out = {"width": 0, "space": 0}
        for m in self.markers:
            out[m.check] += 1
        return out


def run_drc(
    path: Path,
    min_width_nm: float = 50.0,
    min_space_nm: float = 50.0,
    layer: Layer = Layer.SILICON,
    threads: int | None = None,
) -> DrcResult:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"layout {path} does not exist")
    for name, v in (("min_width_nm", min_width_nm), ("min_space_nm", min_space_nm)):
        if not 0 < v < 10_000:
            raise ValueError(f"{name}={v} must be in (0, 10000) nm")
    start = time.perf_counter()
    ly = kdb.Layout()
    try:
        ly.read(str(path))
    except RuntimeError as exc:
        raise ValueError(
            f"{path} is not a readable GDS/OASIS layout ({str(exc).splitlines()[0]})"
        ) from None
    tops = ly.top_cells()
    if len(tops) != 1:
        raise ValueError(f"{path} has {len(tops)} top cells; DRC needs exactly one chip cell")
    li = ly.find_layer(layer.number, layer.datatype)
    markers: list[DrcMarker] = []
    count = 0
    if li is not None:
        dss = kdb.DeepShapeStore()
        dss.threads = threads or os.cpu_count() or 1
        region = kdb.Region(tops[0].begin_shapes_rec(li), dss)
        count = region.count()
        nm_per_dbu = ly.dbu * 1000.0
        for check, pairs in (
            ("width", region.width_check(round(min_width_nm / nm_per_dbu))),
            ("space", region.space_check(round(min_space_nm / nm_per_dbu))),
        ):
            for ep in pairs.each():
                c = ep.bbox().center()
                markers.append(
                    DrcMarker(check, c.x * ly.dbu, c.y * ly.dbu, ep.distance() * nm_per_dbu)
                )
    return DrcResult(markers, count, time.perf_counter() - start)

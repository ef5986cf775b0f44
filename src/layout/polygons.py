"""Designs -> gdstk polygons of one unit cell, in µm (the GDS user unit), origin at the cell's
lower-left corner. Curves are approximated within ``tolerance_nm`` with vertices on the curve, so
chords cut inside a solid outline and, for a ring, push material up to the tolerance into the
hole; the checker's curve allowance covers that and the snapping of vertices to the 1 nm grid."""

from __future__ import annotations

import gdstk

from layout.design import Design, Kind
from layout.layers import Layer

NM_PER_UM = 1000.0
DEFAULT_TOLERANCE_NM = 1.0


def design_polygons(
    design: Design, tolerance_nm: float = DEFAULT_TOLERANCE_NM, layer: Layer = Layer.SILICON
) -> list[gdstk.Polygon]:
    """One polygon per primitive (a ring is a single polygon with its hole)."""
    if not tolerance_nm > 0:
        raise ValueError(f"tolerance_nm={tolerance_nm} must be > 0 (default 1 nm)")
    tol = tolerance_nm / NM_PER_UM
    out = []
    for p in design.primitives:
        c = (p.center_x_nm / NM_PER_UM, p.center_y_nm / NM_PER_UM)
        half = (p.width_nm / 2 / NM_PER_UM, p.height_nm / 2 / NM_PER_UM)
        if p.kind == Kind.RECTANGLE:
            poly = gdstk.rectangle(
                (c[0] - half[0], c[1] - half[1]), (c[0] + half[0], c[1] + half[1])
            )
        elif p.kind == Kind.ELLIPSE:
            poly = gdstk.ellipse(c, half, tolerance=tol)
        else:
            inner = (p.inner_width_nm / 2 / NM_PER_UM, p.inner_height_nm / 2 / NM_PER_UM)
            poly = gdstk.ellipse(c, half, inner_radius=inner, tolerance=tol)
        poly.layer, poly.datatype = layer.value
        out.append(poly)
    return out

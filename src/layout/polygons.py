"""Designs -> gdstk polygons of one unit cell, in µm (the GDS user unit), origin at the cell's
lower-left corner.

Curves are approximated within ``tolerance_nm`` by vertices on the curve at equal steps of the
parametric angle, a whole number of steps per quadrant, so the four axis tips of every ellipse
(outer curve and hole of a ring alike) are vertices. The tips are placed on the 1 nm grid of the
written file here, rounded away from the centre. The file's own rounding of the other vertices
(to the nearest grid point) cannot pass a tip, so the written bounding box of an ellipse or ring
is never smaller than its design, nor the extent of a hole — and both equal the design whenever
the tips already lie on the grid, as they do for every design the checker passes with its default
5 nm grid (centres and edges on the grid put the tips there). Rounding a hole's tips inwards
instead would keep the wall at the tip but narrow the hole's tip, which KLayout's space check
flags on holes at the 45 nm tip-radius limit; outwards costs the wall at a tip less than one
nanometre (half of one on a half-nanometre design grid, nothing on the default grid), which the
wall's curve allowance covers.

Chords cut up to the tolerance inside a solid outline and, for a ring, push material up to it
into the hole; with the snapping of vertices (at most half a grid step per axis, just under one
for a tip designed off the half-nanometre grid) the checker's curve allowance covers that.
Rectangle corners round to the nearest grid point (halves up; here rather than in the writer,
whose float arithmetic breaks ties either way). That rounding is monotone and commutes with
whole-nanometre shifts, so it never makes a rectangle narrower, nor a gap between two rectangles
smaller, than a whole number of nanometres the design keeps: 100 nm sizes and 50 nm gaps
survive, where rounding rectangles outwards would cost a 50 nm gap between two half-nanometre
edges a whole nanometre that no allowance absorbs.
"""

from __future__ import annotations

import math

import gdstk
import numpy as np
from numpy.typing import NDArray

from layout.design import Design, Kind, Primitive
from layout.layers import Layer

NM_PER_UM = 1000.0
DEFAULT_TOLERANCE_NM = 1.0
GRID_NM = 1.0
"""The database unit of every written layout (``gds_writer`` writes with precision 1e-9 m)."""

_SLACK = 1e-6  # nm: float noise in ``centre ± size/2`` must not push a tip a whole grid step


def design_polygons(
    design: Design, tolerance_nm: float = DEFAULT_TOLERANCE_NM, layer: Layer = Layer.SILICON
) -> list[gdstk.Polygon]:
    """One polygon per primitive (a ring is a single polygon with its hole)."""
    if not tolerance_nm > 0:
        raise ValueError(f"tolerance_nm={tolerance_nm} must be > 0 (default 1 nm)")
    number, datatype = layer.value
    return [
        gdstk.Polygon(
            (primitive_outline_nm(p, tolerance_nm) / NM_PER_UM).tolist(), number, datatype
        )
        for p in design.primitives
    ]


def primitive_outline_nm(p: Primitive, tolerance_nm: float) -> NDArray[np.float64]:
    """(V, 2) vertices in nm, counter-clockwise: a rectangle's corners on the 1 nm grid (nearest,
    halves up); an ellipse from ``ellipse_vertices_nm``; a ring as one polygon, the outer curve
    from its +x tip back to it, then the hole clockwise from its +x tip back to it (the two tips
    joined by a zero-width seam, as ``gdstk.ellipse`` writes a ring)."""
    if p.kind == Kind.RECTANGLE:
        x0, x1 = (_round_grid(p.center_x_nm + s * p.width_nm / 2) for s in (-1, 1))
        y0, y1 = (_round_grid(p.center_y_nm + s * p.height_nm / 2) for s in (-1, 1))
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    c = (p.center_x_nm, p.center_y_nm)
    outer = ellipse_vertices_nm(c, p.width_nm / 2, p.height_nm / 2, tolerance_nm)
    if p.kind == Kind.ELLIPSE:
        return outer
    hole = ellipse_vertices_nm(c, p.inner_width_nm / 2, p.inner_height_nm / 2, tolerance_nm)
    # Close each curve on its +x tip; the hole runs clockwise so the material stays on the left.
    return np.concatenate([outer, outer[:1], hole[:1], hole[:0:-1], hole[:1]])


def quadrant_steps(semi_x_nm: float, semi_y_nm: float, tolerance_nm: float) -> int:
    """Parametric steps per quadrant that keep every chord within ``tolerance_nm`` of the curve.

    A chord over the parametric step 2h of an ellipse deviates from it by at most
    max(a, b) * (1 - cos h) (the affine image of a circle's sagitta), so h <= acos(1 - tol / r).
    """
    r = max(semi_x_nm, semi_y_nm)
    if r <= tolerance_nm:
        return 1
    h = math.acos(1.0 - tolerance_nm / r)
    return max(1, math.ceil((math.pi / 2) / (2 * h) - 1e-12))


def ellipse_vertices_nm(
    centre: tuple[float, float],
    semi_x_nm: float,
    semi_y_nm: float,
    tolerance_nm: float,
) -> NDArray[np.float64]:
    """(4m, 2) vertices counter-clockwise from the +x tip, the four tips at indices 0, m, 2m, 3m
    placed on the 1 nm grid away from the centre; the other vertices lie on the curve and are
    left to the file's rounding."""
    m = quadrant_steps(semi_x_nm, semi_y_nm, tolerance_nm)
    t = np.arange(4 * m) * (np.pi / 2 / m)
    cx, cy = centre
    pts = np.stack([cx + semi_x_nm * np.cos(t), cy + semi_y_nm * np.sin(t)], axis=1)
    mid_x, mid_y = _round_grid(cx), _round_grid(cy)
    pts[0] = (_ceil_grid(cx + semi_x_nm), mid_y)
    pts[m] = (mid_x, _ceil_grid(cy + semi_y_nm))
    pts[2 * m] = (_floor_grid(cx - semi_x_nm), mid_y)
    pts[3 * m] = (mid_x, _floor_grid(cy - semi_y_nm))
    return pts


def _ceil_grid(v: float) -> float:
    return math.ceil(v / GRID_NM - _SLACK) * GRID_NM


def _floor_grid(v: float) -> float:
    return math.floor(v / GRID_NM + _SLACK) * GRID_NM


def _round_grid(v: float) -> float:
    return math.floor(v / GRID_NM + 0.5) * GRID_NM

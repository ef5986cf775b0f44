"""Exact distances between the convex outlines used in unit cells, via support functions.

Every outline here (rectangle, ellipse) is convex and centrally symmetric, with a closed-form
support width s(u). Two such sets A and B are separated by max_u [u.(cB - cA) - sA(u) - sB(u)]
(positive: the gap; negative: they overlap), and B sits inside A with clearance
min_u [u.(cA - cB) + sA(u) - sB(u)]. Both are one-dimensional problems over the direction angle,
solved by a dense sweep refined twice around the best angle: accurate to well below 1 pm and
vectorised over any number of pairs, which is what lets the checker run ~10^5 designs/s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from layout.design import Kind

FloatArray = NDArray[np.float64]

_COARSE = 256
_FINE = 33


def support_width(
    kind: NDArray[np.int8], half_w: FloatArray, half_h: FloatArray, ux: FloatArray, uy: FloatArray
) -> FloatArray:
    """Centred support function of the outer outline: rectangle or ellipse (rings use their outer
    ellipse). Inputs broadcast; ``kind`` selects the formula per element."""
    rect = half_w * np.abs(ux) + half_h * np.abs(uy)
    ell = np.hypot(half_w * ux, half_h * uy)
    return np.where(kind == Kind.RECTANGLE, rect, ell)


def maximize_over_directions(
    objective: Callable[[FloatArray, FloatArray], FloatArray], count: int
) -> FloatArray:
    """max over unit vectors u of ``objective(ux, uy)`` for ``count`` independent problems.

    ``objective`` receives (count, S) direction arrays and returns (count, S) values.
    """
    if count == 0:
        return np.zeros(0)
    theta = np.broadcast_to(np.linspace(0.0, 2 * np.pi, _COARSE, endpoint=False), (count, _COARSE))
    values = objective(np.cos(theta), np.sin(theta))
    best = np.argmax(values, axis=1)
    center = theta[np.arange(count), best]
    best_value: FloatArray = values[np.arange(count), best]
    step = 2 * np.pi / _COARSE
    for _ in range(2):
        local = center[:, None] + np.linspace(-step, step, _FINE)[None, :]
        v = objective(np.cos(local), np.sin(local))
        k = np.argmax(v, axis=1)
        center = local[np.arange(count), k]
        best_value = np.maximum(best_value, v[np.arange(count), k])
        step = 2 * step / (_FINE - 1)
    return best_value


def _max_offset_less_supports(
    dx: FloatArray,
    dy: FloatArray,
    outlines: list[tuple[float, NDArray[np.int8], FloatArray, FloatArray]],
) -> FloatArray:
    """max over u of u.(dx, dy) - sum(weight * s(u)) over (weight, kind, half_w, half_h) outlines:
    the one direction problem behind both separation and clearance."""
    c = (slice(None), None)

    def f(ux: FloatArray, uy: FloatArray) -> FloatArray:
        value = ux * dx[c] + uy * dy[c]
        for weight, kind, hw, hh in outlines:
            value = value - weight * support_width(kind[c], hw[c], hh[c], ux, uy)
        return value

    return maximize_over_directions(f, dx.shape[0])


def separation(
    kind_a: NDArray[np.int8],
    hw_a: FloatArray,
    hh_a: FloatArray,
    kind_b: NDArray[np.int8],
    hw_b: FloatArray,
    hh_b: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
) -> FloatArray:
    """Signed separation of outline B (centre offset dx, dy from A) from outline A: > 0 is the
    Euclidean gap, <= 0 means they touch or overlap."""
    return _max_offset_less_supports(dx, dy, [(1.0, kind_a, hw_a, hh_a), (1.0, kind_b, hw_b, hh_b)])


def clearance_inside(
    hw_hole: FloatArray,
    hh_hole: FloatArray,
    kind_b: NDArray[np.int8],
    hw_b: FloatArray,
    hh_b: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
) -> FloatArray:
    """Clearance of outline B (centre offset dx, dy) inside an elliptical hole: > 0 is the gap to
    the hole's edge, <= 0 means B is not wholly inside.

    min_u [-u.d + s_hole(u) - s_B(u)] = -max_u [u.d - s_hole(u) + s_B(u)].
    """
    ell = np.full(dx.shape, Kind.ELLIPSE, dtype=np.int8)
    return -_max_offset_less_supports(
        dx, dy, [(1.0, ell, hw_hole, hh_hole), (-1.0, kind_b, hw_b, hh_b)]
    )

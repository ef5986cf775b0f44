"""Per-row and per-column fill counts of a design's raster, without drawing the raster.

The analytic model only needs how many solid pixels each row and each column of the 128x128
raster holds. Drawing 16,384 pixels per design to sum them again costs more than the rest of
the model, so the counts are computed from each primitive's row intervals directly, with the
pixel-centre rule of ``layout.raster`` (a pixel is solid when its centre lies inside a shape,
half-open at the far edges): rows count their interval lengths, columns come from a
difference array of the interval ends. ``tests/simulators/test_spectral_fills.py`` checks the
counts against the raster's own sums.

Primitives are assumed not to overlap, which the fabrication checker guarantees; pixels of
overlapping hand-made primitives are counted once per primitive (clipped to a full line).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from layout.design import DesignLibrary, Kind
from layout.raster import IMAGE_SIZE, half_width

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _bounds(
    center: FloatArray, half: FloatArray, pixel: FloatArray, size: int
) -> tuple[IntArray, IntArray]:
    """Columns [c0, c1) whose centres fall in [center - half, center + half); c1 >= c0."""
    lo = np.ceil((center - half) / pixel - 0.5)
    hi = np.ceil((center + half) / pixel - 0.5)
    c0 = np.minimum(np.maximum(lo, 0), size).astype(np.int64)
    c1 = np.minimum(np.maximum(hi, lo, out=hi), size).astype(np.int64)
    return np.maximum(c0, 0), np.maximum(c1, c0)


def line_fills(library: DesignLibrary, size: int = IMAGE_SIZE) -> tuple[IntArray, IntArray]:
    """``(columns, rows)``, each (N, size): solid pixels in each column (summed over y) and in
    each row (summed over x) of ``rasterize(library, size)``."""
    n, k = library.kind.shape
    d, s = np.nonzero(library.kind != Kind.EMPTY)
    kind = library.kind[d, s][:, None]
    pixel = (library.period_nm[d] / size)[:, None]
    dy = (np.arange(size) + 0.5)[None, :] * pixel - library.center_y_nm[d, s][:, None]
    cx = library.center_x_nm[d, s][:, None]
    outer = half_width(
        dy, library.width_nm[d, s][:, None] / 2, library.height_nm[d, s][:, None] / 2,
        kind != Kind.RECTANGLE,
    )  # fmt: skip
    c0, c1 = _bounds(cx, outer, pixel, size)  # (M, size) outer interval of every raster row
    counts = c1 - c0
    # Columns: each row interval adds one to the columns it spans; a difference array
    # (+1 at its start, -1 at its end) summed along the columns counts them all at once.
    base = (d * (size + 1))[:, None]
    spans = counts > 0
    starts = [(base + c0)[spans]]
    ends = [(base + c1)[spans]]
    ring = np.flatnonzero(kind[:, 0] == Kind.RING)
    if ring.size:
        dr, sr = d[ring], s[ring]
        inner = half_width(
            dy[ring], library.inner_width_nm[dr, sr][:, None] / 2,
            library.inner_height_nm[dr, sr][:, None] / 2, np.ones((ring.size, 1), dtype=bool),
        )  # fmt: skip
        i0, i1 = _bounds(cx[ring], inner, pixel[ring], size)
        i0 = np.minimum(np.maximum(i0, c0[ring]), c1[ring])
        i1 = np.maximum(np.minimum(i1, c1[ring]), i0)
        counts[ring] -= i1 - i0
        holes = i1 > i0
        starts.append((base[ring] + i1)[holes])  # a hole ends a run and starts the next
        ends.append((base[ring] + i0)[holes])
    bins = n * (size + 1)
    diff = np.bincount(np.concatenate(starts), minlength=bins) - np.bincount(
        np.concatenate(ends), minlength=bins
    )
    columns = np.cumsum(diff.reshape(n, size + 1)[:, :size], axis=1)
    dense = np.zeros((n, k, size), dtype=np.int64)
    dense[d, s] = counts
    rows = dense.sum(axis=1)
    return np.minimum(columns, size), np.minimum(rows, size)

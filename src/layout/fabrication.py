"""What fabrication does to a design, as geometry: the e-beam's size bias.

One definition for everyone who needs it: the spectral models (a pad as fabricated), the virtual
chip (per-pad dilation) and the optimizers (designs scored over sampled fabrications).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from layout.design import DesignLibrary, Kind

FloatArray = NDArray[np.float64]


def apply_size_bias(library: DesignLibrary, size_bias_nm: FloatArray) -> DesignLibrary:
    """The library as fabricated: widths and heights grow by the bias, ring holes shrink by it.

    ``design_id`` is kept: a dilated pad is still that design, made imperfectly. Sizes are
    clipped at zero so a large negative bias erases a feature instead of inverting it.
    """
    if not np.any(size_bias_nm):
        return library
    b = size_bias_nm[:, None]
    ring = library.kind == Kind.RING
    present = library.present

    def grow(col: FloatArray, sign: float, where: NDArray[np.bool_]) -> FloatArray:
        out: FloatArray = np.where(where, np.maximum(col + sign * b, 0.0), col)
        return out

    return DesignLibrary(
        library.design_id,
        library.period_nm,
        library.kind,
        library.center_x_nm,
        library.center_y_nm,
        grow(library.width_nm, 1.0, present),
        grow(library.height_nm, 1.0, present),
        grow(library.inner_width_nm, -1.0, ring),
        grow(library.inner_height_nm, -1.0, ring),
    )

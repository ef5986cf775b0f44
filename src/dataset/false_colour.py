"""False-colour RGB from a stack of narrow bands: what a person looks at first.

One definition for every quick-look in the project (the scan's per-array quick-look and the
simulated bench's preview), so the same pad looks the same colour in both: R, G and B are
Gaussians of :data:`RGB_SIGMA_NM` centred at :data:`RGB_CENTERS_NM`, each normalised to sum to 1
over the bands, applied to flat-fielded transmission (white = bare glass).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

RGB_CENTERS_NM = (610.0, 550.0, 465.0)
RGB_SIGMA_NM = 25.0


def rgb_weights(centers_nm: ArrayLike) -> NDArray[np.float64]:
    """(3, B) band weights for R, G, B: Gaussians at :data:`RGB_CENTERS_NM`, each summing to 1."""
    c = np.asarray(centers_nm, dtype=np.float64)
    w = np.exp(-0.5 * ((c[None, :] - np.array(RGB_CENTERS_NM)[:, None]) / RGB_SIGMA_NM) ** 2)
    out: NDArray[np.float64] = w / w.sum(axis=1, keepdims=True)
    return out


def false_colour(transmission: ArrayLike, centers_nm: ArrayLike) -> NDArray[np.float32]:
    """(H, W, 3) RGB in 0..1 from a (B, H, W) transmission stack; NaN bands count as 0."""
    t = np.nan_to_num(np.asarray(transmission, dtype=np.float32))
    if t.ndim != 3:
        raise ValueError(f"transmission must be (bands, height, width), got shape {t.shape}")
    w = rgb_weights(centers_nm).astype(np.float32)
    if w.shape[1] != t.shape[0]:
        raise ValueError(f"{w.shape[1]} band centres for {t.shape[0]} bands")
    rgb: NDArray[np.float32] = np.clip(np.einsum("cb,bhw->hwc", w, t), 0.0, 1.0)
    return rgb

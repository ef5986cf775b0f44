"""Fundamental guided modes of a film between air and a substrate, for the analytic model.

A patterned film couples normally incident light into the guided modes of the (effective) slab
once the grating vector matches a mode: lambda = P n_mode(lambda) (a guided-mode resonance).
The analytic model needs n_mode for millions of (design, polarization, wavelength) values, so
``ModeTable`` solves the slab's dispersion relation once per call on a grid of slab
permittivities at every wavelength and the model interpolates in it.

Dispersion relation of the asymmetric slab (cover n_a, film n_f, substrate n_s, thickness d;
Marcuse / Yariv), fundamental mode, effective index b in (max(n_a, n_s), n_f):

    k0 d sqrt(n_f^2 - b^2) = atan(r_a g_a / kappa) + atan(r_s g_s / kappa),

with kappa = sqrt(n_f^2 - b^2), g_i = sqrt(b^2 - n_i^2), r_i = 1 (TE) or (n_f / n_i)^2 (TM).
The left side minus the right falls monotonically with b, so bisection finds the root; the mode
exists when that difference is positive at b = n_s (otherwise it is cut off). A cut-off mode is
reported as n_s: its resonance then sits on the substrate's Rayleigh anomaly, where it merges
into the radiation continuum, so the model stays continuous through the cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def slab_mode_index(
    n_film: ArrayLike,
    thickness_over_wavelength: ArrayLike,
    n_substrate: ArrayLike,
    *,
    tm: bool = False,
    n_cover: float = 1.0,
    iterations: int = 48,
) -> FloatArray:
    """Effective index of the fundamental TE (or TM) mode, broadcast over the arguments; the
    substrate index where the mode is cut off (see the module docstring)."""
    nf, hl, ns = np.broadcast_arrays(
        np.asarray(n_film, dtype=np.float64),
        np.asarray(thickness_over_wavelength, dtype=np.float64),
        np.asarray(n_substrate, dtype=np.float64),
    )
    floor = np.maximum(ns, n_cover)
    ra = (nf / n_cover) ** 2 if tm else np.ones_like(nf)
    rs = (nf / ns) ** 2 if tm else np.ones_like(nf)

    def mismatch(b: FloatArray) -> FloatArray:
        kappa = np.sqrt(np.maximum(nf**2 - b**2, 1e-300))
        ga = np.sqrt(np.maximum(b**2 - n_cover**2, 0.0))
        gs = np.sqrt(np.maximum(b**2 - ns**2, 0.0))
        out: FloatArray = (
            2 * np.pi * hl * kappa - np.arctan(ra * ga / kappa) - np.arctan(rs * gs / kappa)
        )
        return out

    guided = (nf > floor) & (mismatch(floor) > 0)
    lo, hi = floor.copy(), np.where(guided, nf, floor)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = mismatch(mid) > 0
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    out: FloatArray = np.where(guided, (lo + hi) / 2, ns)
    return out


@dataclass(frozen=True)
class ModeTable:
    """n_TE and n_TM on a uniform grid of slab permittivity (rows) at each wavelength (columns)."""

    eps_min: float
    eps_step: float
    te: FloatArray  # (E, W)
    tm: FloatArray  # (E, W)

    @staticmethod
    def build(
        wavelength_nm: FloatArray,
        thickness_nm: float,
        n_substrate: FloatArray,
        eps_max: float,
        points: int = 256,
    ) -> ModeTable:
        grid = np.linspace(1.0, max(float(eps_max), 1.5), points)
        hl = (thickness_nm / wavelength_nm)[None, :]
        n = np.sqrt(grid)[:, None]
        te = slab_mode_index(n, hl, n_substrate[None, :])
        tm = slab_mode_index(n, hl, n_substrate[None, :], tm=True)
        return ModeTable(float(grid[0]), float(grid[1] - grid[0]), te, tm)

    def lookup(self, eps_slab: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(n_TE, n_TM) for real slab permittivities of shape (..., W), linear in the grid."""
        rows = self.te.shape[0]
        u = np.clip((eps_slab - self.eps_min) / self.eps_step, 0.0, rows - 1.0)
        i = np.minimum(u.astype(np.int64), rows - 2)
        frac = u - i
        w = np.arange(self.te.shape[1])
        te: FloatArray = self.te[i, w] * (1 - frac) + self.te[i + 1, w] * frac
        tm: FloatArray = self.tm[i, w] * (1 - frac) + self.tm[i + 1, w] * frac
        return te, tm

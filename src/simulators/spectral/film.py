"""The unpatterned film: an Airy thin-film stack, air / film / substrate, at normal incidence.

This is the one closed form every spectral model must reproduce for an unpatterned film, so
both models and the tests share it. The substrate is a half-space: the incoherent back face of
a real slide cancels when spectra are referenced to bare glass, and RCWA's output layer is a
half-space too, so zero-order transmission here and there mean the same thing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simulators.materials import SUBSTRATE, refractive_index

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


def airy_stack(
    n_film: ArrayLike,
    thickness_nm: ArrayLike,
    wavelength_nm: ArrayLike,
    n_substrate: ArrayLike,
    n_ambient: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """Power transmission and reflection of one film, broadcast over all arguments.

    t = t01 t12 e^{i delta} / (1 + r01 r12 e^{2 i delta}) with delta = 2 pi n d / lambda and
    T = Re(n2)/n0 |t|^2 (Born & Wolf; physics.md section 3). Loss is Im n > 0, so e^{i delta}
    decays through the film.
    """
    n1 = np.asarray(n_film, dtype=np.complex128)
    n2 = np.asarray(n_substrate, dtype=np.complex128)
    n0 = complex(n_ambient)
    r01, t01 = (n0 - n1) / (n0 + n1), 2 * n0 / (n0 + n1)
    r12, t12 = (n1 - n2) / (n1 + n2), 2 * n1 / (n1 + n2)
    phase = np.exp(2j * np.pi * n1 * np.asarray(thickness_nm) / np.asarray(wavelength_nm))
    denominator = 1 + r01 * r12 * phase**2
    t = t01 * t12 * phase / denominator
    r = (r01 + r12 * phase**2) / denominator
    T: FloatArray = np.asarray(n2.real / n0.real * np.abs(t) ** 2, dtype=np.float64)
    R: FloatArray = np.asarray(np.abs(r) ** 2, dtype=np.float64)
    return T, R


def film_transmission(
    wavelength_nm: ArrayLike, thickness_nm: float, material: str, substrate: str = SUBSTRATE
) -> FloatArray:
    """Zero-order transmission of an unpatterned ``material`` film on ``substrate`` (W,)."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    T, _ = airy_stack(
        refractive_index(material, lam), thickness_nm, lam, refractive_index(substrate, lam)
    )
    return T


def bare_substrate_transmission(wavelength_nm: ArrayLike, substrate: str = SUBSTRATE) -> FloatArray:
    """Air -> substrate interface, 4 n / (1 + n)^2 (about 0.965 for glass): the flat-field level
    a measurement divides by, kept here so the virtual chip and the models agree on it."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    T, _ = airy_stack(1.0, 0.0, lam, refractive_index(substrate, lam))
    return T

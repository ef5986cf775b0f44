"""Refractive indices of the film and substrate materials, vectorized over wavelength.

Every index is complex ``n + i k`` with ``k >= 0`` (the exp(-i omega t) convention torcwa uses,
so loss is Im(eps) > 0). The material names are :mod:`layout.material`'s (a chip manifest records
one); this module holds what each name means optically and where its numbers come from.

* ``"a-Si"``, **the default**: hydrogen-free amorphous silicon. One Tauc-Lorentz oscillator
  (G. E. Jellison Jr. and F. A. Modine, Appl. Phys. Lett. 69, 371 (1996); their closed-form
  Kramers-Kronig eps1, so no numerical integral) fitted to the evaporated a-Si of D. T. Pierce
  and W. E. Spicer, Phys. Rev. B 5, 3017 (1972), whose 8 points between 443 and 729 nm are kept
  below as ``PIERCE_SPICER_TABLE`` (as tabulated by refractiveindex.info): A = 118.5 eV,
  E0 = 3.449 eV, C = 2.452 eV, Eg = 1.182 eV, eps_inf = 1.171, within 0.012 of the table in n and
  0.006 in k. The fit is used rather than the table because it is smooth and physical at every
  wavelength. Why it is the default: MOCLIP (Rodionov et al.) deposits its films by LPCVD, and
  LPCVD amorphous silicon (silane at about 550 C) is hydrogen-free like evaporated a-Si; MOCLIP
  publishes no n, k of its own film, so the published hydrogen-free film stands for it.
* ``"a-Si:H"``: hydrogenated amorphous silicon, selectable, never the default. The n, k table of
  the torcwa examples (kch3782/torcwa, ``example/Materials_data/aSiH.txt``; the maintainers'
  own PECVD film, torcwa issue #12), sampled here every 10 nm over 350-990 nm; between samples n
  is interpolated linearly and k log-linearly (k falls roughly exponentially through the Urbach
  tail), which reproduces the 1 nm table to < 1e-3 in n. Its n lies about 1 below published
  a-Si:H films, so it is one film's measurement, not a typical a-Si:H.
* ``"fused-silica"`` (the substrate): I. H. Malitson, J. Opt. Soc. Am. 55, 1205 (1965), his
  three-term Sellmeier formula and coefficients.
* ``"n=<complex>"`` (e.g. ``"n=3.5"`` or ``"n=3.5+0.01j"``): a dispersionless film, for tests (a
  lossless film is the only way to check energy conservation) and what-if studies.

The two silicon films absorb very differently (absorption length at 550 nm: 58 nm for a-Si,
725 nm for a-Si:H), so a 178 nm film's transmission depends on the choice far more than on
anything else the simulators model: the film is always a parameter, recorded in every file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layout.material import CONSTANT_PREFIX, FILM_MATERIALS, constant_index

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

HC_EV_NM = 1239.841984  # photon energy E[eV] = HC_EV_NM / wavelength[nm]

# a-Si:H, the torcwa example table (kch3782/torcwa example/Materials_data/aSiH.txt, the
# maintainers' PECVD film): wavelength nm, n, k every 10 nm.
_ASIH_TABLE = np.array(
    [
        (350, 4.571591, 1.339922),
        (360, 4.529034, 1.061183),
        (370, 4.426845, 0.832439),
        (380, 4.297743, 0.667208),
        (390, 4.171186, 0.557785),
        (400, 4.060006, 0.488879),
        (410, 3.972553, 0.447315),
        (420, 3.911299, 0.417441),
        (430, 3.870415, 0.385236),
        (440, 3.838229, 0.344074),
        (450, 3.804296, 0.296265),
        (460, 3.764315, 0.248297),
        (470, 3.719239, 0.205512),
        (480, 3.672084, 0.170349),
        (490, 3.625976, 0.143038),
        (500, 3.583264, 0.121446),
        (510, 3.543597, 0.103875),
        (520, 3.506895, 0.089590),
        (530, 3.473048, 0.077923),
        (540, 3.441878, 0.068329),
        (550, 3.413169, 0.060374),
        (560, 3.386697, 0.053722),
        (570, 3.362246, 0.048113),
        (580, 3.339616, 0.043347),
        (590, 3.318624, 0.039268),
        (600, 3.299109, 0.035752),
        (610, 3.280924, 0.032704),
        (620, 3.263942, 0.030047),
        (630, 3.248048, 0.027719),
        (640, 3.233143, 0.025671),
        (650, 3.219136, 0.023861),
        (660, 3.205950, 0.022258),
        (670, 3.193513, 0.020834),
        (680, 3.181763, 0.019565),
        (690, 3.170644, 0.018433),
        (700, 3.160106, 0.017421),
        (710, 3.150104, 0.016516),
        (720, 3.140597, 0.015707),
        (730, 3.131550, 0.014983),
        (740, 3.122929, 0.014335),
        (750, 3.114705, 0.013757),
        (760, 3.106851, 0.013241),
        (770, 3.099345, 0.012781),
        (780, 3.092163, 0.012369),
        (790, 3.085284, 0.012001),
        (800, 3.078686, 0.011673),
        (810, 3.072353, 0.011381),
        (820, 3.066270, 0.011122),
        (830, 3.060421, 0.010895),
        (840, 3.054794, 0.010697),
        (850, 3.049377, 0.010525),
        (860, 3.044162, 0.010378),
        (870, 3.039144, 0.010251),
        (880, 3.034312, 0.010129),
        (890, 3.029646, 0.010010),
        (900, 3.025135, 0.009894),
        (910, 3.020768, 0.009781),
        (920, 3.016536, 0.009671),
        (930, 3.012430, 0.009563),
        (940, 3.008444, 0.009457),
        (950, 3.004570, 0.009354),
        (960, 3.000802, 0.009253),
        (970, 2.997133, 0.009155),
        (980, 2.993559, 0.009058),
        (990, 2.990074, 0.008964),
    ],
    dtype=np.float64,
)

# Pierce & Spicer (1972) evaporated a-Si, as tabulated by refractiveindex.info: the data the
# Tauc-Lorentz parameters below were fitted to, kept for the test that checks the fit.
PIERCE_SPICER_TABLE = np.array(
    [
        (442.8, 4.47, 1.64),
        (476.9, 4.49, 1.28),
        (516.6, 4.46, 0.969),
        (563.6, 4.36, 0.690),
        (619.9, 4.23, 0.461),
        (652.6, 4.17, 0.363),
        (688.8, 4.09, 0.271),
        (729.3, 4.01, 0.199),
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class TaucLorentz:
    """One Tauc-Lorentz oscillator; energies in eV."""

    amplitude_ev: float
    center_ev: float
    broadening_ev: float
    gap_ev: float
    eps_inf: float

    def permittivity(self, wavelength_nm: FloatArray) -> ComplexArray:
        """eps1 + i eps2 from Jellison & Modine's closed form (no numerical KK integral)."""
        A, E0, C, Eg = self.amplitude_ev, self.center_ev, self.broadening_ev, self.gap_ev
        E = HC_EV_NM / wavelength_nm
        eps2 = np.where(
            Eg < E,
            A * E0 * C * (E - Eg) ** 2 / (((E**2 - E0**2) ** 2 + C**2 * E**2) * E),
            0.0,
        )
        # |E - Eg| enters two logs whose singular parts cancel ((E - Eg)^2 ln|E - Eg| -> 0);
        # a floor keeps E == Eg exactly (1049 nm) finite instead of inf - inf.
        dist = np.maximum(np.abs(E - Eg), 1e-12)
        alpha = np.sqrt(4 * E0**2 - C**2)
        gamma2 = E0**2 - C**2 / 2
        zeta4 = (E**2 - gamma2) ** 2 + alpha**2 * C**2 / 4
        a_ln = (Eg**2 - E0**2) * E**2 + Eg**2 * C**2 - E0**2 * (E0**2 + 3 * Eg**2)
        a_atan = (E**2 - E0**2) * (E0**2 + Eg**2) + Eg**2 * C**2
        pi = np.pi
        eps1 = (
            self.eps_inf
            + A * C * a_ln / (2 * pi * zeta4 * alpha * E0)
            * np.log((E0**2 + Eg**2 + alpha * Eg) / (E0**2 + Eg**2 - alpha * Eg))
            - A * a_atan / (pi * zeta4 * E0)
            * (pi - np.arctan((2 * Eg + alpha) / C) + np.arctan((alpha - 2 * Eg) / C))
            + 2 * A * E0 * Eg * (E**2 - gamma2) / (pi * zeta4 * alpha)
            * (pi + 2 * np.arctan(2 * (gamma2 - Eg**2) / (alpha * C)))
            - A * E0 * C * (E**2 + Eg**2) / (pi * zeta4 * E) * np.log(dist / (E + Eg))
            + 2 * A * E0 * C * Eg / (pi * zeta4)
            * np.log(dist * (E + Eg) / np.sqrt((E0**2 - Eg**2) ** 2 + Eg**2 * C**2))
        )  # fmt: skip
        result: ComplexArray = eps1 + 1j * eps2
        return result


EVAPORATED_A_SI = TaucLorentz(
    amplitude_ev=118.5, center_ev=3.449, broadening_ev=2.452, gap_ev=1.182, eps_inf=1.171
)
MALITSON_B = (0.6961663, 0.4079426, 0.8974794)
MALITSON_C_UM = (0.0684043, 0.1162414, 9.896161)


@dataclass(frozen=True)
class Material:
    """A named index model and the wavelength range where its source data hold."""

    name: str
    min_wavelength_nm: float
    max_wavelength_nm: float
    index: Callable[[FloatArray], ComplexArray]
    source: str


def _asih_index(wavelength_nm: FloatArray) -> ComplexArray:
    lam, n, k = _ASIH_TABLE.T
    n_i = np.interp(wavelength_nm, lam, n)
    k_i = np.exp(np.interp(wavelength_nm, lam, np.log(k)))
    out: ComplexArray = n_i + 1j * k_i
    return out


def _evaporated_index(wavelength_nm: FloatArray) -> ComplexArray:
    n: ComplexArray = np.sqrt(EVAPORATED_A_SI.permittivity(wavelength_nm))
    return n


def _malitson_index(wavelength_nm: FloatArray) -> ComplexArray:
    lam2 = (wavelength_nm / 1000.0) ** 2
    n2 = 1.0 + sum(
        b * lam2 / (lam2 - c * c) for b, c in zip(MALITSON_B, MALITSON_C_UM, strict=True)
    )
    out: ComplexArray = np.sqrt(n2).astype(np.complex128)
    return out


MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material(
            "a-Si",
            250.0,
            2000.0,
            _evaporated_index,
            "Tauc-Lorentz (Jellison & Modine, APL 1996) fit to Pierce & Spicer, PRB 1972",
        ),
        Material(
            "a-Si:H", 350.0, 990.0, _asih_index, "torcwa example aSiH.txt (kch3782/torcwa, PECVD)"
        ),
        Material("fused-silica", 210.0, 3710.0, _malitson_index, "Malitson, JOSA 1965, Sellmeier"),
    )
}
SILICON_MATERIALS = FILM_MATERIALS  # the named films a chip manifest may record
SUBSTRATE = "fused-silica"


def _constant(text: str) -> Material:
    value = constant_index(text)  # one parser for manifests and models alike

    def index(wavelength_nm: FloatArray) -> ComplexArray:
        return np.full(np.shape(wavelength_nm), value, dtype=np.complex128)

    return Material(text, 0.0, np.inf, index, "constant")


def get_material(name: str) -> Material:
    """The named material, or a constant ``n=<complex>``; a one-line error lists the names."""
    if name.startswith(CONSTANT_PREFIX):
        return _constant(name)
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(
            f"unknown material {name!r}; known: {', '.join(MATERIALS)} or n=<complex index>"
        ) from None


def refractive_index(material: str, wavelength_nm: ArrayLike) -> ComplexArray:
    """Complex index of ``material`` at each wavelength (any shape); raises outside its data."""
    mat = get_material(material)
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    if lam.size and not (np.all(np.isfinite(lam)) and np.all(lam > 0)):
        raise ValueError(f"{material}: wavelengths must be finite and > 0 nm")
    if lam.size and (lam.min() < mat.min_wavelength_nm or lam.max() > mat.max_wavelength_nm):
        raise ValueError(
            f"{material}: wavelengths {lam.min():g}-{lam.max():g} nm fall outside its data "
            f"({mat.min_wavelength_nm:g}-{mat.max_wavelength_nm:g} nm, {mat.source})"
        )
    return mat.index(lam)

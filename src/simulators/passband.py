"""The tunable filter's passband, and what "the transmission in a band" means for a measurement.

A liquid-crystal tunable filter (Kurios) passes a band, not a line, so a camera behind it sees
the pad's spectrum integrated against lamp x filter x detector. The measured transmission in
band ``i`` is a flat-fielded ratio of two such integrals taken through the same passband
(physics.md section 5, "Measured value"):

    T_i = integral T(l) S(l) F_i(l) dl / integral S(l) F_i(l) dl

with ``S`` = lamp photon rate x camera QE and ``F_i`` the filter profile centred on band i.
This is what processing must recover, so the virtual chip's ground truth is this average, not
T sampled at the centre. A bare-glass reference measured through the same passband has
``G_i`` computed the same way; since both share the denominator, the flat-fielded ratio
``integral T S F / integral T_glass S F`` is exactly ``T_i / G_i``.

Numbers, and where they come from (physics.md section 5 unless stated):

* Profile: Gaussian, sigma = FWHM / 2.355, truncated at ``truncate_sigma`` (4) so the band has a
  definite support that a fine grid must cover.
* FWHM per mode: NARROW 10 nm and WIDE 35 nm (the LCTF figures of physics.md); MEDIUM 20 nm is
  an assumption (between the two, close to their geometric mean 18.7 nm); physics.md gives no
  MEDIUM figure. The figures are taken at 550 nm and scale as (lambda / 550)^2, the Lyot-stack
  behaviour physics.md notes, so NARROW is 6.7 nm at 450 nm and 17.6 nm at 730 nm.
* Peak transmission: 0.45 (polarised light), rolling off linearly to 0.25 at 420 nm below
  500 nm ("lower throughput in the blue": the roll-off shape and 0.25 are assumptions). It is
  constant within a band, so it cancels in ``T_i``; it only sets signal levels for imaging.
* Leakage floor: physics.md suggests 1e-3 to 1e-2 (an assumption there). Default 0 here: over a
  340 nm grid a 1e-3 floor carries ~3 % of a NARROW band's weight, which would make the truth
  depend on the fine grid's extent. Set it (and use the same config for imaging) to study it.
* Lamp: halogen as a 3200 K blackbody, photon rate proportional to lambda * B(lambda, T).
* Camera QE: flat by default. physics.md gives only the IMX174 peak (77 % at 525 nm) and says to
  use the datasheet curve, which is not in the repository; supply it as ``qe_table`` points.
* BLACK blocks the beam: its profile is zero, and averaging through it is an error (0/0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from common.values import Bounds
from instruments.protocols import BandwidthMode

FloatArray = NDArray[np.float64]

DEFAULT_BAND_CENTERS_NM: FloatArray = np.arange(450.0, 731.0, 10.0)
"""The 29 MOCLIP bands: 450-730 nm every 10 nm."""
DEFAULT_MODE = BandwidthMode.NARROW
FILTER_WAVELENGTH_NM = Bounds(420.0, 730.0, unit="nm")  # a Kurios VIS unit's tuning range
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # 1 / 2.3548

_H_C_OVER_K_NM_K = 1.438776877e7  # second radiation constant h c / k_B in nm K


@dataclass(frozen=True)
class PassbandConfig:
    """Filter, lamp and detector constants of the module docstring."""

    narrow_fwhm_nm: float = 10.0
    medium_fwhm_nm: float = 20.0
    wide_fwhm_nm: float = 35.0
    fwhm_reference_nm: float = 550.0
    fwhm_power: float = 2.0  # FWHM grows as lambda^2 in a Lyot stack
    truncate_sigma: float = 4.0
    peak_transmission: float = 0.45
    blue_peak_transmission: float = 0.25  # at blue_limit_nm
    blue_limit_nm: float = 420.0
    blue_rolloff_end_nm: float = 500.0
    leakage: float = 0.0
    lamp_temperature_k: float | None = 3200.0  # None: a flat source (what-ifs, tests)
    qe_table: tuple[tuple[float, float], ...] = ()  # (wavelength_nm, QE) points; () = flat
    fine_step_nm: float = 2.0

    def __post_init__(self) -> None:
        widths = (self.narrow_fwhm_nm, self.medium_fwhm_nm, self.wide_fwhm_nm)
        if not all(np.isfinite(w) and w > 0 for w in widths):
            raise ValueError(f"FWHM values {widths} must be finite and > 0")
        if not 0 < self.fine_step_nm <= 5:
            raise ValueError(f"fine_step_nm={self.fine_step_nm} must be in (0, 5] nm")
        if not self.truncate_sigma >= 2:
            raise ValueError(f"truncate_sigma={self.truncate_sigma} must be >= 2")
        if not (0 < self.peak_transmission <= 1 and 0 < self.blue_peak_transmission <= 1):
            raise ValueError("peak transmissions must be in (0, 1]")
        if not 0 <= self.leakage < 1:
            raise ValueError(f"leakage={self.leakage} must be in [0, 1)")
        if self.lamp_temperature_k is not None and not self.lamp_temperature_k > 0:
            raise ValueError(f"lamp_temperature_k={self.lamp_temperature_k} must be > 0")
        if self.qe_table:
            lam = np.array([p[0] for p in self.qe_table])
            qe = np.array([p[1] for p in self.qe_table])
            if lam.size < 2 or np.any(np.diff(lam) <= 0) or np.any(qe <= 0) or np.any(qe > 1):
                raise ValueError(
                    "qe_table needs >= 2 points with increasing wavelength and QE in (0, 1]"
                )

    def fwhm_nm(self, mode: BandwidthMode, center_nm: ArrayLike) -> FloatArray:
        """FWHM of ``mode`` at each centre wavelength (0 for BLACK)."""
        c = np.asarray(center_nm, dtype=np.float64)
        base = {
            BandwidthMode.NARROW: self.narrow_fwhm_nm,
            BandwidthMode.MEDIUM: self.medium_fwhm_nm,
            BandwidthMode.WIDE: self.wide_fwhm_nm,
            BandwidthMode.BLACK: 0.0,
        }[mode]
        out: FloatArray = base * (c / self.fwhm_reference_nm) ** self.fwhm_power
        return out

    def peak(self, center_nm: ArrayLike) -> FloatArray:
        """Peak filter transmission at each centre wavelength (blue roll-off, then flat)."""
        c = np.asarray(center_nm, dtype=np.float64)
        out: FloatArray = np.interp(
            c,
            [self.blue_limit_nm, self.blue_rolloff_end_nm],
            [self.blue_peak_transmission, self.peak_transmission],
        )
        return out


def filter_transmission(
    wavelength_nm: ArrayLike,
    center_nm: ArrayLike,
    mode: BandwidthMode,
    config: PassbandConfig | None = None,
) -> FloatArray:
    """Filter power transmission F(lambda) for each centre: (B, W) for B centres, W wavelengths.

    This is the absolute profile (peak and leakage included) that image formation multiplies the
    lamp by; BLACK gives zeros (the filter blocks the beam for dark frames).
    """
    cfg = config or PassbandConfig()
    lam = np.atleast_1d(np.asarray(wavelength_nm, dtype=np.float64))
    c = np.atleast_1d(np.asarray(center_nm, dtype=np.float64))
    if mode is BandwidthMode.BLACK:
        return np.zeros((c.size, lam.size))
    sigma = (cfg.fwhm_nm(mode, c) * FWHM_TO_SIGMA)[:, None]
    z = (lam[None, :] - c[:, None]) / sigma
    shape = np.where(np.abs(z) <= cfg.truncate_sigma, np.exp(-0.5 * z**2), 0.0)
    out: FloatArray = cfg.peak(c)[:, None] * shape + cfg.leakage
    return out


def source_weight(wavelength_nm: ArrayLike, config: PassbandConfig | None = None) -> FloatArray:
    """S(lambda) = lamp photon rate x camera QE, normalised to 1 at its maximum on the grid.

    Photon rate of a blackbody is proportional to lambda * B = lambda^-4 / (exp(hc / lambda k T) - 1);
    the normalisation is irrelevant to band averages and keeps numbers near 1.
    """
    cfg = config or PassbandConfig()
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    if cfg.lamp_temperature_k is None:
        photons = np.ones_like(lam)
    else:
        photons = lam**-4.0 / np.expm1(_H_C_OVER_K_NM_K / (lam * cfg.lamp_temperature_k))
    if cfg.qe_table:
        points = np.array(cfg.qe_table, dtype=np.float64)
        photons = photons * np.interp(lam, points[:, 0], points[:, 1])
    out: FloatArray = photons / photons.max()
    return out


def fine_grid(
    centers_nm: ArrayLike = DEFAULT_BAND_CENTERS_NM,
    mode: BandwidthMode = DEFAULT_MODE,
    config: PassbandConfig | None = None,
) -> FloatArray:
    """A uniform grid covering every band's truncated support, aligned to multiples of the step.

    Alignment keeps band centres on grid points when they are multiples of the step, so the
    quadrature is symmetric about each centre (a linear spectrum then averages to its centre
    value up to the lamp's slope).
    """
    cfg = config or PassbandConfig()
    c = np.asarray(centers_nm, dtype=np.float64)
    if mode is BandwidthMode.BLACK:
        raise ValueError("BLACK mode blocks the beam: there is no passband to sample")
    half = cfg.truncate_sigma * FWHM_TO_SIGMA * cfg.fwhm_nm(mode, c)
    step = cfg.fine_step_nm
    lo = np.floor((c - half).min() / step)
    hi = np.ceil((c + half).max() / step)
    out: FloatArray = np.arange(lo, hi + 0.5) * step
    return out


def band_weights(
    fine_wavelength_nm: ArrayLike,
    centers_nm: ArrayLike,
    mode: BandwidthMode,
    config: PassbandConfig | None = None,
) -> FloatArray:
    """(B, W) quadrature weights, each row summing to 1: F_i(lambda) S(lambda) d lambda, normalised.

    Raises if the grid does not cover a band's support or samples it too coarsely, because the
    average would then silently be biased.
    """
    cfg = config or PassbandConfig()
    lam = np.asarray(fine_wavelength_nm, dtype=np.float64)
    c = np.atleast_1d(np.asarray(centers_nm, dtype=np.float64))
    if mode is BandwidthMode.BLACK:
        raise ValueError("BLACK mode blocks the beam: a band average through it is undefined")
    if lam.ndim != 1 or lam.size < 2 or np.any(np.diff(lam) <= 0):
        raise ValueError("fine_wavelength_nm must be a strictly increasing 1-D grid")
    sigma = cfg.fwhm_nm(mode, c) * FWHM_TO_SIGMA
    half = cfg.truncate_sigma * sigma
    if lam[0] > (c - half).min() + 1e-9 or lam[-1] < (c + half).max() - 1e-9:
        raise ValueError(
            f"fine grid {lam[0]:g}-{lam[-1]:g} nm does not cover the {mode.value} passbands "
            f"({(c - half).min():.1f}-{(c + half).max():.1f} nm); use fine_grid()"
        )
    if np.diff(lam).max() > sigma.min():
        raise ValueError(
            f"fine grid step {np.diff(lam).max():g} nm is coarser than the narrowest "
            f"passband's sigma {sigma.min():.2f} nm"
        )
    w = _weights(lam, c, mode, cfg)
    out: FloatArray = w / w.sum(axis=1, keepdims=True)
    return out


def _weights(
    lam: FloatArray, c: FloatArray, mode: BandwidthMode, cfg: PassbandConfig
) -> FloatArray:
    """Unnormalised F_i(lambda) S(lambda) d lambda on the grid (trapezoid interval widths)."""
    dl = np.concatenate(
        [[0.5 * (lam[1] - lam[0])], 0.5 * (lam[2:] - lam[:-2]), [0.5 * (lam[-1] - lam[-2])]]
    )
    out: FloatArray = (
        filter_transmission(lam, c, mode, cfg) * source_weight(lam, cfg)[None, :] * dl[None, :]
    )
    return out


def band_throughput_nm(
    fine_wavelength_nm: ArrayLike,
    centers_nm: ArrayLike,
    mode: BandwidthMode,
    config: PassbandConfig | None = None,
) -> FloatArray:
    """integral F_i S d lambda per centre (B,), in nm of peak-normalised lamp x QE: the light a
    band delivers, which sets camera signal levels (0 for BLACK). Only ratios between bands on
    the same grid mean anything, since ``source_weight`` is normalised on that grid.
    """
    cfg = config or PassbandConfig()
    lam = np.asarray(fine_wavelength_nm, dtype=np.float64)
    c = np.atleast_1d(np.asarray(centers_nm, dtype=np.float64))
    if mode is BandwidthMode.BLACK:
        return np.zeros(c.size)
    out: FloatArray = _weights(lam, c, mode, cfg).sum(axis=1)
    return out


def band_average(
    spectra_fine: ArrayLike,
    fine_wavelength_nm: ArrayLike,
    centers_nm: ArrayLike = DEFAULT_BAND_CENTERS_NM,
    mode: BandwidthMode = DEFAULT_MODE,
    config: PassbandConfig | None = None,
) -> FloatArray:
    """Passband-weighted average of spectra on the fine grid: (..., W) -> (..., B).

    ``integral T S F_i / integral S F_i`` (module docstring): the transmission a flat-fielded
    measurement through band i reports relative to a perfectly transmitting reference.
    """
    spec = np.asarray(spectra_fine, dtype=np.float64)
    lam = np.asarray(fine_wavelength_nm, dtype=np.float64)
    if spec.shape[-1:] != lam.shape:
        raise ValueError(
            f"spectra_fine last axis ({spec.shape[-1:]}) must match the fine grid ({lam.shape})"
        )
    w = band_weights(lam, centers_nm, mode, config)
    out: FloatArray = spec @ w.T
    return out

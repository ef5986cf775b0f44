"""Colours of transmission spectra under the bench's lamp, and of sRGB pixels, with colour-science.

Structural colour printing asks "what colour does this pad look like under the microscope's
lamp", so every colour here is the light a pad transmits: the relative transmission T(λ)
(:mod:`dataset.conventions`, x and y averaged: the lamp is unpolarized) times the lamp's
spectrum, seen by the CIE 1931 2° observer. The eye (and a white-balanced camera) adapts to the
lamp, so the tristimulus values are adapted from the lamp's white to D65 (CAT02) before sRGB or
CIELAB: a pad that transmits everything is sRGB white, whatever the lamp's temperature.

**The bands truncate the visible range.** The microscope measures 450-730 nm, the observer sees
380-780 nm. Outside the measured bands each spectrum is held at its edge value (T(380..440) =
T(450), T(740..780) = T(730)): the flat continuation a smooth film spectrum has far from its
resonances. The error this makes is largest for violets and deep reds, where the unmeasured
tails carry the colour; ``truncation_delta_e`` measures it against spectra known on the whole
range (the simulator's), so the figure is stated, not assumed.

ΔE is CIEDE2000 throughout (``delta_e``): one colour difference, in one place, so the design
objective, the gamut report and the measured comparison cannot disagree on what "close" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import colour
import numpy as np
from numpy.typing import NDArray

OBSERVER = "CIE 1931 2 Degree Standard Observer"
VISIBLE_NM = (380.0, 780.0)  # what the observer integrates over
STEP_NM = 5.0
CAT = "CAT02"
_D65 = colour.CCS_ILLUMINANTS[OBSERVER]["D65"]


@dataclass(frozen=True, eq=False)
class Colorimetry:
    """Spectra on ``wavelength_nm`` bands to colours under a blackbody lamp of
    ``lamp_temperature_k`` (the bench's halogen: :class:`simulators.passband.PassbandConfig`)."""

    wavelength_nm: NDArray[np.float64]
    lamp_temperature_k: float = 3200.0
    _grid_nm: NDArray[np.float64] = field(init=False, repr=False)
    _cmfs: Any = field(init=False, repr=False)
    _lamp: Any = field(init=False, repr=False)
    _lamp_white: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        bands = np.asarray(self.wavelength_nm, dtype=np.float64)
        if bands.ndim != 1 or bands.size < 2 or np.any(np.diff(bands) <= 0):
            raise ValueError("wavelength_nm must be at least 2 strictly increasing bands")
        if not (1000.0 <= self.lamp_temperature_k <= 20_000.0):
            raise ValueError(
                f"lamp_temperature_k={self.lamp_temperature_k} is outside [1000, 20000] K"
            )
        shape = colour.SpectralShape(VISIBLE_NM[0], VISIBLE_NM[1], STEP_NM)
        object.__setattr__(self, "wavelength_nm", bands)
        object.__setattr__(self, "_grid_nm", np.asarray(shape.wavelengths, dtype=np.float64))
        object.__setattr__(self, "_cmfs", colour.MSDS_CMFS[OBSERVER].copy().align(shape))
        object.__setattr__(self, "_lamp", colour.sd_blackbody(self.lamp_temperature_k, shape))
        white = self._integrate(np.ones((1, self._grid_nm.size)))[0]
        object.__setattr__(self, "_lamp_white", white)

    @property
    def truncation(self) -> str:
        """How the spectra are continued where the bands stop (for reports)."""
        lo, hi = self.wavelength_nm[0], self.wavelength_nm[-1]
        return (
            f"bands {lo:g}-{hi:g} nm; held at their edge values over {VISIBLE_NM[0]:g}-{lo:g} "
            f"and {hi:g}-{VISIBLE_NM[1]:g} nm"
        )

    def _integrate(self, on_grid: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, G) transmission on the observer's grid -> (N, 3) XYZ, lamp white Y = 1."""
        xyz = colour.msds_to_XYZ(
            on_grid, self._cmfs, self._lamp, method="Integration", shape=self._cmfs.shape
        )
        return np.asarray(xyz, dtype=np.float64).reshape(-1, 3) / 100.0

    def _on_grid(self, spectra: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        s = np.asarray(spectra, dtype=np.float64)
        if s.shape[-1] != self.wavelength_nm.size or s.ndim < 2 or s.shape[-2] != 2:
            raise ValueError(
                f"spectra must be (..., 2, {self.wavelength_nm.size}) x, y transmission on the "
                f"{self.wavelength_nm.size} bands, got shape {s.shape}"
            )
        unpolarized = s.mean(axis=-2).reshape(-1, s.shape[-1])
        # np.interp holds the edge values outside the bands: the truncation of the docstring.
        return np.stack([np.interp(self._grid_nm, self.wavelength_nm, t) for t in unpolarized])

    def xyz_of_spectra(self, spectra: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(..., 2, W) relative transmission -> (..., 3) XYZ adapted to D65 (white Y = 1)."""
        shape = np.shape(spectra)[:-2]
        xyz = self._integrate(self._on_grid(spectra))
        adapted = colour.chromatic_adaptation(
            xyz, self._lamp_white, colour.xy_to_XYZ(_D65), method="Von Kries", transform=CAT
        )
        return np.asarray(adapted, dtype=np.float64).reshape(*shape, 3)

    def lab_of_spectra(self, spectra: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(..., 2, W) -> (..., 3) CIELAB (D65 white), L in 0..100."""
        return lab_of_xyz(self.xyz_of_spectra(spectra))

    def srgb_of_spectra(self, spectra: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(..., 2, W) -> (..., 3) sRGB in 0..1, clipped where a colour lies outside sRGB."""
        return srgb_of_xyz(self.xyz_of_spectra(spectra))

    def lab_of_full_spectra(
        self, wavelength_nm: NDArray[np.float64], spectra: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """CIELAB of spectra known over the whole visible range (simulators): the reference the
        truncation is measured against. ``spectra`` (..., 2, V) on ``wavelength_nm`` (V,)."""
        lam = np.asarray(wavelength_nm, dtype=np.float64)
        if lam[0] > VISIBLE_NM[0] or lam[-1] < VISIBLE_NM[1]:
            raise ValueError(
                f"full spectra must span {VISIBLE_NM[0]:g}-{VISIBLE_NM[1]:g} nm, got "
                f"{lam[0]:g}-{lam[-1]:g} nm"
            )
        s = np.asarray(spectra, dtype=np.float64)
        shape = s.shape[:-2]
        flat = s.mean(axis=-2).reshape(-1, lam.size)
        on_grid = np.stack([np.interp(self._grid_nm, lam, t) for t in flat])
        xyz = colour.chromatic_adaptation(
            self._integrate(on_grid),
            self._lamp_white,
            colour.xy_to_XYZ(_D65),
            method="Von Kries",
            transform=CAT,
        )
        return lab_of_xyz(np.asarray(xyz).reshape(*shape, 3))

    def truncation_delta_e(
        self, wavelength_nm: NDArray[np.float64], full_spectra: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """ΔE2000 between the colour of the whole-range spectra and that of the same spectra
        sampled on this object's bands (what the bench measures): the truncation's error."""
        lam = np.asarray(wavelength_nm, dtype=np.float64)
        s = np.asarray(full_spectra, dtype=np.float64)
        banded = np.stack(
            [np.interp(self.wavelength_nm, lam, t) for t in s.reshape(-1, lam.size)]
        ).reshape(*s.shape[:-1], self.wavelength_nm.size)
        return delta_e(self.lab_of_full_spectra(lam, s), self.lab_of_spectra(banded))


def lab_of_xyz(xyz: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    return np.asarray(colour.XYZ_to_Lab(xyz, _D65), dtype=np.float64)


def srgb_of_xyz(xyz: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    rgb = colour.XYZ_to_sRGB(xyz, _D65)
    return np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)


def lab_of_srgb(rgb8: NDArray[np.integer[Any]]) -> NDArray[np.float64]:
    """(..., 3) 8-bit sRGB pixels -> CIELAB (D65 white)."""
    rgb = np.asarray(rgb8)
    if rgb.shape[-1:] != (3,) or np.any(rgb < 0) or np.any(rgb > 255):
        raise ValueError(f"sRGB pixels must be (..., 3) in 0..255, got shape {rgb.shape}")
    xyz = colour.sRGB_to_XYZ(rgb.astype(np.float64) / 255.0, _D65)
    return lab_of_xyz(xyz)


def lab_to_srgb(lab: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """CIELAB (D65) -> sRGB in 0..1, clipped (for drawing)."""
    return srgb_of_xyz(colour.Lab_to_XYZ(lab, _D65))


def delta_e(
    lab_a: NDArray[np.floating[Any]], lab_b: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """CIEDE2000 between broadcastable CIELAB arrays (..., 3)."""
    return np.asarray(colour.delta_E(lab_a, lab_b, method="CIE 2000"), dtype=np.float64)

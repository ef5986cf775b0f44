"""The halogen lamp as both cameras see it: light per band, slow drift and per-frame flicker.

Drift and flicker are keyed by what is being rendered, never by wall time, so a resumed scan
sees the lamp the first run saw. Within one field of view (a tile, keyed by the stage position)
the drift is a smooth random curve over the scan position ``s`` = polarisation x 30 + (wavelength
- 450 nm) / 10 nm, i.e. the band index in the default plan order, plus a per-tile offset: the
lamp wanders between the flat, the darks and each array tile, which is what the reference camera
has to correct. The curve is a sum of sinusoids with random phases and a 1/f amplitude spectrum
down to ``drift_correlation_bands``, scaled so its rms over many tiles is ``drift_rms``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from instruments.protocols import BandwidthMode
from simulators.keyed_random import KeyPart, keyed_rng
from simulators.microscope.config import LampConfig
from simulators.passband import (
    DEFAULT_BAND_CENTERS_NM,
    PassbandConfig,
    band_throughput_nm,
    band_weights,
    fine_grid,
)

FloatArray = NDArray[np.float64]
_TERMS = 8


def global_fine_grid(
    config: PassbandConfig, low_nm: float = 420.0, high_nm: float = 730.0
) -> FloatArray:
    """One wavelength grid covering every passband the filter can be tuned to (WIDE at its ends).

    It is :func:`simulators.passband.fine_grid` of the range's ends, so it is aligned to the
    same multiples of the step as the truth file's grid: band averages on it equal the truth's to
    rounding, the extra points carrying zero weight.
    """
    return fine_grid(np.array([low_nm, high_nm]), BandwidthMode.WIDE, config)


class Lamp:
    """Light per band (relative to the brightest default band) and the lamp's instability."""

    def __init__(
        self, config: LampConfig, passband: PassbandConfig, grid_nm: FloatArray, seed: int
    ) -> None:
        self.config = config
        self.passband = passband
        self.grid_nm = grid_nm
        self.seed = seed
        reference = band_throughput_nm(
            grid_nm, DEFAULT_BAND_CENTERS_NM, BandwidthMode.NARROW, passband
        )
        self._reference_throughput = float(reference.max())

    def relative_light(self, wavelength_nm: float, mode: BandwidthMode) -> float:
        """Light through the filter at this setting / that of the brightest default NARROW band."""
        if mode is BandwidthMode.BLACK:
            return 0.0
        through = band_throughput_nm(self.grid_nm, [wavelength_nm], mode, self.passband)[0]
        return float(through) / self._reference_throughput

    def weights(self, wavelength_nm: float, mode: BandwidthMode) -> FloatArray:
        """Band-average weights on the grid for this filter setting (W,)."""
        out: FloatArray = band_weights(self.grid_nm, [wavelength_nm], mode, self.passband)[0]
        return out

    def drift(self, tile: tuple[KeyPart, ...], scan_position: float) -> float:
        """Relative lamp deviation (about 0) for a tile at scan position ``s``."""
        cfg = self.config
        if cfg.drift_rms == 0:
            return 0.0
        rng = keyed_rng(self.seed, "lamp-drift", *tile)
        offset = rng.standard_normal() * cfg.drift_rms / math.sqrt(2.0)
        f_min = 1.0 / (4.0 * cfg.drift_correlation_bands)
        freqs = f_min * np.exp(rng.uniform(0.0, math.log(8.0), _TERMS))  # cycles per band
        amps = 1.0 / freqs
        amps *= cfg.drift_rms / math.sqrt(2.0) / math.sqrt(0.5 * float(np.sum(amps**2)))
        phases = rng.uniform(0.0, 2.0 * math.pi, _TERMS)
        wave = float(np.sum(amps * np.sin(2.0 * math.pi * freqs * scan_position + phases)))
        return float(offset) + wave

    def flicker(self, state: tuple[KeyPart, ...], frame: int) -> float:
        """Relative per-frame deviation; both cameras ask with the same key for the same frame."""
        if self.config.flicker_rms == 0:
            return 0.0
        draw = keyed_rng(self.seed, "lamp-flicker", *state, frame).standard_normal()
        return float(draw) * self.config.flicker_rms

    def factor(
        self,
        tile: tuple[KeyPart, ...],
        scan_position: float,
        state: tuple[KeyPart, ...],
        frame: int,
    ) -> float:
        """Lamp intensity relative to nominal for one frame of a device state (never below 0)."""
        return max(0.0, 1.0 + self.drift(tile, scan_position) + self.flicker(state, frame))

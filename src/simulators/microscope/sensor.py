"""A camera sensor (EMVA 1288 linear model): photo-electrons in, digital numbers out.

mu_e = rate x t x PRNU + dark current x t + DSNU (+ hot pixels' dark current); the variance in
electrons is mu_e + read noise^2 (shot noise as a Gaussian: even darks hold tens of electrons
and frames are averaged, so the Poisson-Gaussian difference is far below what processing can
see); electrons clip at the full well; DN = offset + K e, K = full scale / full well x gain,
rounded and clipped to the bit depth. Fixed patterns (PRNU, DSNU, hot pixels) are drawn once
per sensor from the seed: they are properties of the camera, the same in every frame.

Fresh Gaussian numbers cost ~40 ms per 2048x2048 frame here, more than everything else a frame
needs. Each sensor therefore draws one table of at least twice its pixel count of iid standard
normals once, and a frame reads a contiguous run of it at a keyed random offset with a keyed
random sign. Every pixel of every frame is then N(0, 1), and a pixel's noise in different
frames comes from different table entries (independent) unless two frames draw the same offset
(probability ~ frames^2 / table size). What this gives up: the noise patterns of two frames are
shifted copies of each other over part of the field, which nothing downstream can notice.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from simulators.keyed_random import keyed_rng
from simulators.microscope.blocks import row_blocks, run_blocks
from simulators.microscope.config import SensorConfig

F32 = NDArray[np.float32]


class Sensor:
    """One camera's sensor with its fixed-pattern maps and its noise table."""

    def __init__(self, config: SensorConfig, seed: int, name: str) -> None:
        self.config = config
        self.seed = seed
        self.name = name
        shape = (config.height_px, config.width_px)
        rng = keyed_rng(seed, "sensor", name)
        self.prnu: F32 = (1.0 + config.prnu * rng.standard_normal(shape)).astype(np.float32)
        self._dsnu_e: F32 = (config.dsnu_e * np.abs(rng.standard_normal(shape))).astype(np.float32)
        self._hot: NDArray[np.bool_] = rng.random(shape) < config.hot_pixel_fraction
        self._table: F32 | None = None
        self._dark: tuple[float, F32] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.config.height_px, self.config.width_px

    @property
    def hot_pixels(self) -> NDArray[np.intp]:
        """(row, col) of every hot pixel."""
        return np.argwhere(self._hot)

    def dark_e(self, exposure_s: float) -> F32:
        """Mean dark signal in electrons per pixel for an exposure (the last one is cached)."""
        if self._dark is not None and self._dark[0] == exposure_s:
            return self._dark[1]
        c = self.config
        dark = self._dsnu_e + np.float32(c.dark_current_e_per_s * exposure_s)
        dark[self._hot] += np.float32(c.hot_pixel_dark_e_per_s * exposure_s)
        self._dark = (exposure_s, dark)
        return dark

    def gain_dn_per_e(self, gain_db: float, bit_depth: int) -> float:
        return float(((1 << bit_depth) - 1) / self.config.full_well_e * 10.0 ** (gain_db / 20.0))

    def _noise_table(self) -> F32:
        if self._table is None:
            size = 1 << int(np.ceil(np.log2(2 * self.shape[0] * self.shape[1])))
            rng = keyed_rng(self.seed, "noise-table", self.name)
            self._table = rng.standard_normal(size, dtype=np.float32)
        return self._table

    def _noise(self, start: int, count: int) -> F32:
        table = self._noise_table()
        start %= table.size
        if start + count <= table.size:
            return table[start : start + count]
        return np.concatenate([table[start:], table[: start + count - table.size]])

    def expose(
        self,
        rate_e_per_s: F32 | None,
        exposure_s: float,
        gain_db: float,
        bit_depth: int,
        rng: np.random.Generator,
        *,
        window: tuple[slice, slice] | None = None,
        executor: Executor | None = None,
        blocks: int = 1,
    ) -> NDArray[np.uint16]:
        """One frame in DN at ``bit_depth`` (uint16) for a photo-electron rate map (None: dark).

        ``rate_e_per_s`` covers the window (the full sensor when ``window`` is None).
        """
        c = self.config
        rows, cols = window or (slice(0, c.height_px), slice(0, c.width_px))
        dark = self.dark_e(exposure_s)[rows, cols]
        prnu = self.prnu[rows, cols]
        out = np.empty(dark.shape, dtype=np.uint16)
        width = dark.shape[1]
        offset = int(rng.integers(self._noise_table().size))
        sign = np.float32(1.0 if rng.random() < 0.5 else -1.0)
        read_var = np.float32(c.read_noise_e**2)
        full_well = np.float32(c.full_well_e)
        full_scale = np.float32((1 << bit_depth) - 1)
        k = np.float32(self.gain_dn_per_e(gain_db, bit_depth))
        black = np.float32(c.offset_fraction * float(full_scale) + 0.5)  # +0.5: truncation rounds
        t = np.float32(exposure_s)

        def work(block: slice) -> None:
            e = dark[block].copy()
            if rate_e_per_s is not None:
                signal = rate_e_per_s[block] * prnu[block]
                signal *= t
                e += signal
            noise = self._noise(offset + block.start * width, e.size).reshape(e.shape)
            sd = np.sqrt(e + read_var)
            sd *= noise
            sd *= sign
            e += sd
            np.clip(e, 0.0, full_well, out=e)
            e *= k
            e += black
            np.clip(e, 0.0, full_scale, out=e)
            out[block] = e

        run_blocks(executor, work, row_blocks(dark.shape[0], blocks))
        return out

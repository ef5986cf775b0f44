"""The virtual microscope: the frame each camera sees for the bench's state.

It reads the state of the emulated filter, rotator and stage (through a :class:`StateSource`),
and renders the sample camera's view of the virtual chip and the reference camera's view of the
lamp. Conventions and constants are in :mod:`simulators.microscope.config`; geometry in
:mod:`simulators.microscope.scene`; the lamp in :mod:`simulators.microscope.lamp`; the sensor in
:mod:`simulators.microscope.sensor`.

What a frame depends on is its key: the device state (quantised), the exposure and gain, and
the frame's index since the state last changed. Noise and lamp flicker come from generators
keyed by it, so rendering the same key again, in any process, gives the same frame.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Protocol

from instruments.protocols import BandwidthMode
from simulators.keyed_random import keyed_rng, quantize
from simulators.microscope.config import MicroscopeConfig
from simulators.microscope.lamp import Lamp, global_fine_grid
from simulators.microscope.scene import ChipScene, PixelMap, View
from simulators.microscope.sensor import Sensor
from simulators.virtual_chip import VirtualChip

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
Role = Literal["sample", "reference"]


@dataclass(frozen=True)
class OpticalState:
    """What the devices are doing: filter, rotator angle and stage position (physical µm)."""

    wavelength_nm: float
    mode: BandwidthMode
    rotator_deg: float
    stage_um: tuple[float, float, float]

    def key(self) -> tuple[int, ...]:
        """The state quantised finer than anything that changes a frame visibly."""
        return (
            quantize(self.wavelength_nm, 1e-3),
            list(BandwidthMode).index(self.mode),
            quantize(self.rotator_deg % 360.0, 1e-3),
            *(quantize(p, 1e-3) for p in self.stage_um),
        )

    def tile(self) -> tuple[int, int]:
        """The field of view's identity for the lamp: stage (x, y) to 0.01 µm."""
        return quantize(self.stage_um[0], 0.01), quantize(self.stage_um[1], 0.01)

    def scan_position(self, hwp_zero_deg: float) -> float:
        """Band index in the default plan order (x bands, then y bands), for the lamp drift."""
        pol = round(((self.rotator_deg - hwp_zero_deg) % 180.0) / 45.0) % 2
        return pol * 30.0 + (self.wavelength_nm - 450.0) / 10.0


class StateSource(Protocol):
    """Anything that can say what the devices are doing now."""

    def optical_state(self) -> OpticalState: ...


class VirtualMicroscope:
    """Renders frames of a virtual chip for the sample and the reference camera."""

    def __init__(
        self, chip: VirtualChip, config: MicroscopeConfig | None = None, *, threads: int = 2
    ) -> None:
        if not 1 <= threads <= 64:
            raise ValueError(f"threads={threads} must be in [1, 64]")
        self.chip = chip
        self.threads = threads
        self._executor = ThreadPoolExecutor(threads) if threads > 1 else None
        self.config = config or MicroscopeConfig()
        cfg = self.config
        self.grid_nm = global_fine_grid(chip.passband)
        self.lamp = Lamp(cfg.lamp, chip.passband, self.grid_nm, cfg.seed)
        self.scene = ChipScene(chip.manifest)
        self.sensors: dict[Role, Sensor] = {
            "sample": Sensor(cfg.sensor, cfg.seed, "sample"),
            "reference": Sensor(cfg.reference_sensor, cfg.seed, "reference"),
        }
        self._fine: FloatArray | None = None
        self._glass_fine = chip.glass_transmission(self.grid_nm)
        self._illumination = self._kohler_map()
        self._spot = self._reference_spot()
        self._views: dict[tuple[int, ...], View] = {}
        self._mean_key: tuple[object, ...] | None = None
        self._mean: F32 | None = None
        self._lamp_off_until = -math.inf

    def close(self) -> None:
        """Stop the render threads."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __enter__(self) -> VirtualMicroscope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lamp_outage(self, duration_s: float) -> None:
        """Fault injection: the lamp goes dark for ``duration_s`` wall seconds from now (a bulb
        failing and being swapped, a shutter closed by a colleague); both cameras see it, as
        they would. Wall time rather than a frame count, because the scan's lamp watch has to
        wait it out."""
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"duration_s={duration_s} must be a finite number >= 0")
        self._lamp_off_until = time.monotonic() + duration_s

    def lamp_is_on(self) -> bool:
        return time.monotonic() >= self._lamp_off_until

    # -- geometry -------------------------------------------------------------------------------

    def mount_to_chip(self, stage_x_um: float, stage_y_um: float) -> tuple[float, float]:
        """The chip point under the optical axis when the stage reads (x, y)."""
        return self.config.mount.stage_to_chip(stage_x_um, stage_y_um)

    def chip_to_stage(self, u_um: float, v_um: float) -> tuple[float, float]:
        """Where to move the stage to bring chip point (u, v) under the optical axis."""
        return self.config.mount.chip_to_stage(u_um, v_um)

    def pixel_map(self, stage_um: tuple[float, ...]) -> PixelMap:
        """Pixel -> chip µm for the sample camera at a stage position (rows grow downwards)."""
        o = self.config.optics
        s = self.config.sensor
        total = math.radians(o.camera_rotation_deg - self.config.mount.rotation_deg)
        step = o.um_per_px
        col = (step * math.cos(total), step * math.sin(total))
        row = (step * math.sin(total), -step * math.cos(total))
        cu, cv = self.mount_to_chip(stage_um[0], stage_um[1])
        half_c, half_r = (s.width_px - 1) / 2.0, (s.height_px - 1) / 2.0
        origin = (cu - half_c * col[0] - half_r * row[0], cv - half_c * col[1] - half_r * row[1])
        return PixelMap(origin, col, row, s.height_px, s.width_px)

    def view(self, stage_um: tuple[float, ...]) -> View:
        """The frame geometry at a stage position, cached (a scan renders many bands per tile)."""
        key = tuple(quantize(p, 1e-3) for p in stage_um)  # z sets the blur margin
        view = self._views.get(key)
        if view is None:
            sigma = self.sigma_um(730.0, stage_um)
            view = self.scene.view(self.pixel_map(stage_um), sigma, self.threads, self._executor)
            if len(self._views) >= 4:
                self._views.pop(next(iter(self._views)))
            self._views[key] = view
        return view

    def sigma_um(self, wavelength_nm: float, stage_um: tuple[float, ...]) -> float:
        z = stage_um[2] if len(stage_um) > 2 else 0.0
        return self.config.optics.psf_sigma_um(wavelength_nm, z - self.config.optics.focus_z_um)

    # -- spectra --------------------------------------------------------------------------------

    @property
    def fine_spectra(self) -> FloatArray:
        """Every pad's true spectrum on the global grid (N, 2, W), solved on first use."""
        if self._fine is None:
            self._fine = self.chip.fine_spectra(self.grid_nm)
        return self._fine

    def polarization_weights(self, rotator_deg: float) -> tuple[float, float]:
        """Power fractions in x and y behind the half-wave plate, extinction included."""
        o = self.config.optics
        phi = math.radians(2.0 * (rotator_deg - o.hwp_zero_deg))
        fx = math.cos(phi) ** 2
        fx = (1.0 - o.extinction_ratio) * fx + o.extinction_ratio * (1.0 - fx)
        return fx, 1.0 - fx

    def pad_transmission(self, state: OpticalState) -> tuple[FloatArray, float]:
        """Band-averaged transmission of every pad for this filter setting and polarisation."""
        w = self.lamp.weights(state.wavelength_nm, state.mode)
        fx, fy = self.polarization_weights(state.rotator_deg)
        per_pol = self.fine_spectra @ w  # (N, 2)
        pads: FloatArray = np.clip(fx * per_pol[:, 0] + fy * per_pol[:, 1], 0.0, 1.0)
        return pads, float(self._glass_fine @ w)

    # -- rendering ------------------------------------------------------------------------------

    def _kohler_map(self) -> F32:
        s, o = self.config.sensor, self.config.optics
        y, x = np.mgrid[-1.0 : 1.0 : s.height_px * 1j, -1.0 : 1.0 : s.width_px * 1j]
        out = (1.0 - o.kohler_falloff * (x**2 + y**2) / 2.0) * (1.0 + o.kohler_tilt * 0.5 * (x + y))
        kohler: F32 = out.astype(np.float32)
        return kohler

    def _reference_spot(self) -> F32:
        s = self.config.reference_sensor
        y, x = np.mgrid[-1.0 : 1.0 : s.height_px * 1j, -1.0 : 1.0 : s.width_px * 1j]
        spot: F32 = np.exp(-(x**2 + y**2) / (2 * 0.6**2)).astype(np.float32)
        return spot

    def sample_rate(self, state: OpticalState) -> F32 | None:
        """Expected photo-electrons per second per pixel on the sample camera (None when dark).

        Cached for the last state: the frames of one band differ only by noise and flicker.
        """
        key = state.key()
        if key == self._mean_key:
            return self._mean
        rate: F32 | None = None
        light = self.lamp.relative_light(state.wavelength_nm, state.mode)
        if light > 0:
            view = self.view(state.stage_um)
            pads, glass = self.pad_transmission(state)
            sigma = self.sigma_um(state.wavelength_nm, state.stage_um)
            rate = self.scene.transmission(view, sigma, pads, glass, self._executor)
            rate *= self._illumination
            rate *= np.float32(light * self.config.lamp.unit_transmission_e_per_s)
        self._mean_key, self._mean = key, rate
        return rate

    def render(
        self,
        role: Role,
        state: OpticalState,
        *,
        exposure_s: float,
        gain_db: float,
        bit_depth: int,
        frame: int,
        window: tuple[slice, slice] | None = None,
    ) -> NDArray[np.uint16]:
        """One frame (DN at ``bit_depth``) as camera ``role`` sees it, exactly reproducible."""
        tile = state.tile()
        scan_position = state.scan_position(self.config.optics.hwp_zero_deg)
        lamp = self.lamp.factor(tile, scan_position, state.key(), frame)
        if role == "sample":
            base = self.sample_rate(state)
        else:
            light = self.lamp.relative_light(state.wavelength_nm, state.mode)
            base = (
                None
                if light == 0
                else self._spot * np.float32(light * self.config.lamp.reference_e_per_s)
            )
        rate = None if base is None or not self.lamp_is_on() else base * np.float32(lamp)
        if rate is not None and window is not None:
            rate = rate[window]
        rng = keyed_rng(
            self.config.seed,
            "frame",
            role,
            *state.key(),
            quantize(exposure_s, 1e-7),
            quantize(gain_db, 1e-3),
            bit_depth,
            frame,
        )
        return self.sensors[role].expose(
            rate,
            exposure_s,
            gain_db,
            bit_depth,
            rng,
            window=window,
            executor=self._executor,
            blocks=self.threads,
        )

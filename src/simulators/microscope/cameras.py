"""Cameras that see the virtual microscope: in-process, or through pylon's camera emulation.

:class:`SimCamera` implements the ``Camera`` protocol directly (fast; tests and large scans).
:class:`PylonImageFeed` wraps the real Basler driver on an emulated pylon camera: before each
grab of N frames it renders the N frames into a folder of 16-bit PNGs and points the emulated
camera's ``ImageFilename`` at that folder. pylon's emulation (checked with pypylon 26.9) reads a
folder's images in order from the first at every grab call, and shifts 16-bit files down to the
pixel format's depth, so frames are rendered at the camera's bit depth and shifted up; the real
driver then triggers, grabs and averages them exactly as it would on hardware.

A frame's index (its noise key) counts grabs since the device state, exposure, gain, bit depth
or ROI last changed, so re-taking a band after a restart sees the frames the first run saw.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Protocol

from instruments.protocols import Camera, Frame
from simulators.devices.pylon_emulation import write_emulator_image
from simulators.microscope.microscope import Role, StateSource, VirtualMicroscope

log = logging.getLogger(__name__)

BIT_DEPTHS = (8, 10, 12, 16)


class FrameCounter:
    """Index of the next frame for a render key; restarts at 0 whenever the key changes."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._next = 0

    def take(self, key: tuple[object, ...], frames: int) -> range:
        if key != self._key:
            self._key, self._next = key, 0
        start = self._next
        self._next += frames
        return range(start, start + frames)


class SimCamera:
    """A ``Camera`` whose frames the virtual microscope renders."""

    def __init__(
        self,
        microscope: VirtualMicroscope,
        states: StateSource,
        role: Role,
        *,
        serial: str = "sim",
        bit_depth: int = 12,
        exposure_range_s: tuple[float, float] = (1e-5, 10.0),
        max_gain_db: float = 24.0,
        readout_s: float = 0.01,
        time_scale: float = 1.0,
    ) -> None:
        if not time_scale >= 0:
            raise ValueError(f"time_scale={time_scale} must be >= 0")
        self.microscope = microscope
        self.states = states
        self.role: Role = role
        self.serial = serial
        self._exposure_range_s = exposure_range_s
        self._max_gain_db = max_gain_db
        self.readout_s = readout_s
        self.time_scale = time_scale
        sensor = microscope.sensors[role].config
        self._sensor_size = (sensor.width_px, sensor.height_px)
        self._exposure_s = 0.01
        self._gain_db = 0.0
        self._bit_depth = 12
        self.bit_depth = bit_depth
        self._roi = (0, 0, sensor.width_px, sensor.height_px)
        self._counter = FrameCounter()

    @property
    def identity(self) -> str:
        return f"virtual microscope {self.role} camera {self.serial}"

    @property
    def exposure_s(self) -> float:
        return self._exposure_s

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        low, high = self._exposure_range_s
        if not low <= value <= high:
            raise ValueError(f"exposure {value:g} s is outside {low:g}..{high:g} s")
        self._exposure_s = float(value)

    @property
    def exposure_range_s(self) -> tuple[float, float]:
        return self._exposure_range_s

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        if not 0.0 <= value <= self._max_gain_db:
            raise ValueError(f"gain {value:g} dB is outside 0..{self._max_gain_db:g} dB")
        self._gain_db = float(value)

    @property
    def bit_depth(self) -> int:
        return self._bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        if value not in BIT_DEPTHS:
            raise ValueError(f"bit depth {value} is not one of {', '.join(map(str, BIT_DEPTHS))}")
        self._bit_depth = int(value)

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self._roi

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None:
        x, y, w, h = (int(v) for v in value)
        width, height = self._sensor_size
        if not (x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= width and y + h <= height):
            raise ValueError(f"ROI {value} does not fit the {width}x{height} sensor")
        self._roi = (x, y, w, h)

    def render_frames(self, frames: int) -> list[NDArray[np.uint16]]:
        """The next ``frames`` frames for the current state, settings and ROI."""
        if frames < 1:
            raise ValueError(f"frames={frames} must be >= 1")
        state = self.states.optical_state()
        x, y, w, h = self._roi
        window = (slice(y, y + h), slice(x, x + w))
        key = (state.key(), self._exposure_s, self._gain_db, self._bit_depth, self._roi)
        return [
            self.microscope.render(
                self.role,
                state,
                exposure_s=self._exposure_s,
                gain_db=self._gain_db,
                bit_depth=self._bit_depth,
                frame=index,
                window=window,
            )
            for index in self._counter.take(key, frames)
        ]

    def grab(self, frames: int, *, software_trigger: bool = True) -> Frame:
        start = time.perf_counter()
        images = self.render_frames(frames)
        total = np.zeros(images[0].shape, dtype=np.float64)
        for image in images:
            total += image
        # Take the device's time: exposure and readout per frame, scaled like the emulators.
        remaining = (self._exposure_s + self.readout_s) * frames * self.time_scale
        remaining -= time.perf_counter() - start
        if remaining > 0:
            time.sleep(remaining)
        return Frame(
            data=total / frames,
            frames_averaged=frames,
            exposure_s=self._exposure_s,
            gain_db=self._gain_db,
            bit_depth=self._bit_depth,
            timestamp_s=time.time(),
            camera=self.identity,
            roi=self._roi,
        )

    def close(self) -> None:
        """Nothing to release: the microscope belongs to whoever built it."""


class FeatureCamera(Camera, Protocol):
    """What the feed needs of the Basler driver: the Camera protocol plus GenICam features."""

    def set_feature(self, name: str, value: str | int | float | bool) -> None: ...


class PylonImageFeed:
    """The real Basler driver on an emulated camera, shown frames the microscope renders."""

    def __init__(
        self,
        camera: FeatureCamera,
        microscope: VirtualMicroscope,
        states: StateSource,
        role: Role,
        folder: Path,
    ) -> None:
        self.camera = camera
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._renderer = SimCamera(microscope, states, role, time_scale=0.0)
        camera.set_feature("TestImageSelector", "Off")
        camera.set_feature("ImageFileMode", "On")

    @property
    def identity(self) -> str:
        return self.camera.identity

    @property
    def exposure_s(self) -> float:
        return self.camera.exposure_s

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        self.camera.exposure_s = value

    @property
    def exposure_range_s(self) -> tuple[float, float]:
        return self.camera.exposure_range_s

    @property
    def gain_db(self) -> float:
        return self.camera.gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        self.camera.gain_db = value

    @property
    def bit_depth(self) -> int:
        return self.camera.bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        self.camera.bit_depth = value

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self.camera.roi

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None:
        self.camera.roi = value

    def grab(self, frames: int, *, software_trigger: bool = True) -> Frame:
        """Render ``frames`` frames as the camera is set now, then let the driver grab them."""
        r = self._renderer
        r.exposure_s = self.camera.exposure_s
        r.gain_db = self.camera.gain_db
        r.bit_depth = self.camera.bit_depth
        images = r.render_frames(frames)
        shift = 16 - r.bit_depth
        for stale in self.folder.glob("*.png"):
            stale.unlink()
        for index, image in enumerate(images):
            shifted: NDArray[np.uint16] = np.left_shift(image, shift, dtype=np.uint16)
            write_emulator_image(self.folder / f"{index:04d}.png", shifted)
        # Setting the file name restarts the emulation at the folder's first image.
        self.camera.set_feature("ImageFilename", str(self.folder))
        return self.camera.grab(frames, software_trigger=software_trigger)

    def close(self) -> None:
        self.camera.close()

"""The small device interfaces acquisition code types against, so it never names a vendor.

Each protocol lists only what a hyperspectral transmission scan needs from that kind of device.
A driver satisfies a protocol structurally; tests check it with ``isinstance`` because the
protocols are runtime-checkable. They come from ``typing_extensions``: on Python 3.11
``typing``'s ``isinstance`` reads every property, which on a driver means a device query.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from typing_extensions import Protocol, runtime_checkable


class BandwidthMode(enum.Enum):
    """Passband settings of a tunable filter; BLACK blocks the beam (dark frames)."""

    BLACK = "black"
    WIDE = "wide"
    MEDIUM = "medium"
    NARROW = "narrow"


@runtime_checkable
class TunableFilter(Protocol):
    """A liquid-crystal tunable filter: centre wavelength, passband, and a blocking mode."""

    @property
    def identity(self) -> str:
        """Model, serial and firmware as the device reports them (recorded with every scan)."""
        ...

    @property
    def wavelength_range_nm(self) -> tuple[float, float]:
        """Lowest and highest centre wavelength the device accepts."""
        ...

    @property
    def wavelength_nm(self) -> float: ...

    @wavelength_nm.setter
    def wavelength_nm(self, value: float) -> None: ...

    @property
    def bandwidth_mode(self) -> BandwidthMode: ...

    @bandwidth_mode.setter
    def bandwidth_mode(self, value: BandwidthMode) -> None: ...

    @property
    def narrowest_mode(self) -> BandwidthMode:
        """The narrowest passband this unit offers (not every model has NARROW)."""
        ...

    @property
    def is_ready(self) -> bool: ...

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the liquid crystals have settled at the last requested state."""
        ...


@runtime_checkable
class PolarizationRotator(Protocol):
    """A motorized rotation mount holding a half-wave plate or polarizer."""

    @property
    def identity(self) -> str:
        """Model, serial and firmware as the device reports them (recorded with every scan)."""
        ...

    @property
    def angle_deg(self) -> float: ...

    def move_to(self, angle_deg: float) -> None:
        """Move to an absolute angle and return when the motion has ended."""
        ...

    def home(self) -> None: ...

    @property
    def is_busy(self) -> bool: ...


@runtime_checkable
class Stage(Protocol):
    """A motorized XY(Z) stage in µm, with soft limits checked before any motion is commanded."""

    @property
    def identity(self) -> str:
        """Model, serial and firmware as the device reports them (recorded with every scan)."""
        ...

    @property
    def position_um(self) -> tuple[float, ...]:
        """Current (x, y) or (x, y, z) in µm."""
        ...

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Start an absolute move; returns once the device has accepted it."""
        ...

    def wait_until_idle(self, timeout_s: float) -> None: ...

    @property
    def is_busy(self) -> bool: ...

    @property
    def speed_mm_per_s(self) -> float: ...

    @speed_mm_per_s.setter
    def speed_mm_per_s(self, value: float) -> None: ...

    @property
    def soft_limits_um(self) -> dict[str, tuple[float, float]]: ...

    def halt(self) -> None: ...


@dataclass(frozen=True)
class Frame:
    """The mean of N exposures in counts (float64), with what is needed to interpret it later."""

    data: npt.NDArray[np.float64]
    frames_averaged: int
    exposure_s: float
    gain_db: float
    bit_depth: int
    timestamp_s: float
    camera: str
    roi: tuple[int, int, int, int]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def full_scale_counts(self) -> int:
        return (1 << self.bit_depth) - 1


@runtime_checkable
class Camera(Protocol):
    """A scientific camera: exposure in s, gain in dB, bit depth, ROI, triggered N-frame grabs."""

    @property
    def identity(self) -> str: ...

    @property
    def exposure_s(self) -> float: ...

    @exposure_s.setter
    def exposure_s(self, value: float) -> None: ...

    @property
    def exposure_range_s(self) -> tuple[float, float]: ...

    @property
    def gain_db(self) -> float: ...

    @gain_db.setter
    def gain_db(self, value: float) -> None: ...

    @property
    def bit_depth(self) -> int: ...

    @bit_depth.setter
    def bit_depth(self, value: int) -> None: ...

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """(offset_x, offset_y, width, height) in pixels."""
        ...

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None: ...

    def grab(self, frames: int, *, software_trigger: bool = True) -> Frame:
        """Acquire ``frames`` exposures and return their float64 mean."""
        ...

    def close(self) -> None: ...

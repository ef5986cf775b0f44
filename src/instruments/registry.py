"""Bench-config driver names → drivers, so that no code outside ``instruments`` names a vendor.

A new device model is one driver file plus one line here (and, for tests, one emulator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from instruments.ascii_instrument import AsciiInstrument, RetryPolicy
from instruments.asi import MS2000
from instruments.basler import BaslerCamera
from instruments.config import CameraConfig, SerialDeviceConfig
from instruments.thorlabs import ELL14, Kurios

SERIAL_DRIVERS: dict[str, type[AsciiInstrument]] = {
    "thorlabs.kurios": Kurios,
    "thorlabs.ell14": ELL14,
    "asi.ms2000": MS2000,
}


def serial_driver_class(name: str) -> type[AsciiInstrument]:
    try:
        return SERIAL_DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown driver {name!r}; known: {sorted(SERIAL_DRIVERS)}") from None


def connect_serial(
    config: SerialDeviceConfig, make_adapter: Callable[[type[AsciiInstrument]], Any] | None = None
) -> Any:
    """The configured driver on the config's VISA address, or on ``make_adapter(driver_class)``
    (which gets the class so it can copy its framing, e.g. for an in-process emulator link).

    Returns the driver as ``Any``: callers hold it as the device protocol their role needs.
    """
    cls = serial_driver_class(config.driver)
    options: dict[str, Any] = {
        "timeout_s": config.timeout_s,
        "retry": RetryPolicy(attempts=config.attempts),
        **config.driver_options(),
    }
    if make_adapter is None:
        return cls(config.address, visa_library=config.visa_library, **options)
    return cls(make_adapter(cls), **options)


def open_camera(config: CameraConfig) -> BaslerCamera:
    """Open the configured camera by serial number and set its bit depth."""
    camera = BaslerCamera.open(
        config.serial,
        timeout_s=config.open_timeout_s,
        readout_margin_s=config.readout_margin_s,
        grab_retries=config.grab_retries,
    )
    try:
        camera.bit_depth = config.bit_depth
    except BaseException:
        camera.close()
        raise
    return camera

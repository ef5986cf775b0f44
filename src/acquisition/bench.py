"""Bench config → a connected bench of drivers, real or emulated.

This is the one place that decides how each device is reached: ``address = "sim"`` puts the real
driver on an in-process emulator through :class:`EmulatorAdapter`, any other address goes through
PyVISA (serial port or socket bridge), and cameras are opened by serial number through pypylon,
pylon's own emulation standing in when ``[simulation] pylon_cameras`` is above zero. Everything
downstream sees only the device protocols.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.ascii_instrument import AsciiInstrument, RetryPolicy
from instruments.asi import MS2000
from instruments.basler import BaslerCamera
from instruments.config import (
    CameraConfig,
    InstrumentsConfig,
    SerialDeviceConfig,
    instruments_config,
    read_toml,
)
from instruments.thorlabs import ELL14, Kurios
from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.emulator import Emulator
from simulators.devices.pylon_emulation import enable_pylon_emulation
from simulators.devices.sim_config import SimulationConfig, build_emulators, simulation_config

log = logging.getLogger(__name__)


@dataclass
class Bench:
    """The five connected devices, and the emulators behind any of them that are simulated."""

    filter: Kurios
    rotator: ELL14
    stage: MS2000
    camera: BaslerCamera
    reference_camera: BaslerCamera
    emulators: dict[str, Emulator] = field(default_factory=dict)

    def close(self) -> None:
        for camera in (self.camera, self.reference_camera):
            with contextlib.suppress(Exception):
                camera.close()
        for driver in (self.filter, self.rotator, self.stage):
            with contextlib.suppress(Exception):
                driver.adapter.close()


def _serial_driver(
    cls: type[AsciiInstrument],
    device: SerialDeviceConfig,
    emulator: Emulator | None,
    **options: Any,
) -> Any:
    retry = RetryPolicy(attempts=device.attempts)
    common: dict[str, Any] = {"timeout_s": device.timeout_s, "retry": retry, **options}
    if emulator is not None:
        adapter = EmulatorAdapter(
            emulator,
            write_termination=cls.WRITE_TERMINATION,
            read_termination=cls.READ_TERMINATION,
            timeout_ms=round(device.timeout_s * 1000),
        )
        return cls(adapter, **common)
    return cls(device.address, visa_library=device.visa_library, **common)


def _camera(config: CameraConfig) -> BaslerCamera:
    camera = BaslerCamera.open(
        config.serial,
        timeout_s=config.open_timeout_s,
        readout_margin_s=config.readout_margin_s,
        grab_retries=config.grab_retries,
    )
    camera.bit_depth = config.bit_depth
    return camera


def connect(instruments: InstrumentsConfig, simulation: SimulationConfig | None = None) -> Bench:
    """Construct every driver and run its connect-time queries (``initialize``)."""
    # Without a [simulation] table nothing is emulated but devices explicitly at address "sim".
    simulation = simulation or SimulationConfig(pylon_cameras=0)
    emulators = build_emulators(instruments, simulation)
    if simulation.pylon_cameras > 0:
        enable_pylon_emulation(simulation.pylon_cameras)
    opened: list[Any] = []
    try:
        filt = _serial_driver(
            Kurios,
            instruments.filter,
            emulators.get("filter"),
            settle_s=instruments.filter.settle_s,
            wavelength_format=instruments.filter.wavelength_format,
        )
        opened.append(filt)
        rotator = _serial_driver(
            ELL14,
            instruments.rotator,
            emulators.get("rotator"),
            address=instruments.rotator.bus_address,
            move_pause_s=instruments.rotator.move_pause_s,
            move_timeout_s=instruments.rotator.move_timeout_s,
        )
        opened.append(rotator)
        stage = _serial_driver(
            MS2000,
            instruments.stage,
            emulators.get("stage"),
            soft_limits_um=dict(instruments.stage.soft_limits_um),
            has_z=instruments.stage.has_z,
            poll_interval_s=instruments.stage.poll_interval_s,
        )
        opened.append(stage)
        for driver in (filt, rotator, stage):
            driver.initialize()
        camera = _camera(instruments.camera)
        opened.append(camera)
        reference = _camera(instruments.reference_camera)
    except BaseException:
        for item in opened:
            with contextlib.suppress(Exception):
                item.close() if isinstance(item, BaslerCamera) else item.adapter.close()
        raise
    return Bench(filt, rotator, stage, camera, reference, emulators)


@contextlib.contextmanager
def connected_bench(config_path: Path) -> Iterator[Bench]:
    """Connect the bench a config file describes; close every device on exit."""
    raw = read_toml(config_path)
    bench = connect(instruments_config(raw, config_path), simulation_config(raw, config_path))
    try:
        yield bench
    finally:
        bench.close()

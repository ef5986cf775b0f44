"""Bench config → a connected bench of devices, real or emulated.

This is the one place that decides how each device is reached: ``address = "sim"`` puts the real
driver on an in-process emulator through :class:`EmulatorAdapter`, any other address goes through
PyVISA (serial port or socket bridge), and cameras are opened by serial number through pypylon,
pylon's own emulation standing in when ``[simulation] pylon_cameras`` is above zero. Which driver
serves a device is the config's ``driver`` name; everything here and downstream sees only the
device protocols.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.ascii_instrument import AsciiInstrument
from instruments.config import InstrumentsConfig, instruments_config, read_toml
from instruments.protocols import Camera, PolarizationRotator, Stage, TunableFilter
from instruments.registry import connect_serial, open_camera
from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.emulator import Emulator
from simulators.devices.pylon_emulation import enable_pylon_emulation
from simulators.devices.sim_config import SimulationConfig, build_emulators, simulation_config

log = logging.getLogger(__name__)


@dataclass
class Bench:
    """The five connected devices, and the emulators behind any of them that are simulated."""

    filter: TunableFilter
    rotator: PolarizationRotator
    stage: Stage
    camera: Camera
    reference_camera: Camera
    emulators: dict[str, Emulator] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        _close_all(self.closers)


def _close_all(closers: list[Callable[[], None]]) -> None:
    """Close in reverse order of opening; one failure must not keep the rest open."""
    while closers:
        close = closers.pop()
        try:
            close()
        except Exception as exc:
            log.warning("while closing the bench: %s", exc)


def _emulator_link(
    emulator: Emulator, timeout_s: float
) -> Callable[[type[AsciiInstrument]], EmulatorAdapter]:
    """An in-process link with the driver's own framing, as a serial port would have."""

    def make(cls: type[AsciiInstrument]) -> EmulatorAdapter:
        return EmulatorAdapter(
            emulator,
            write_termination=cls.WRITE_TERMINATION,
            read_termination=cls.READ_TERMINATION,
            timeout_ms=round(timeout_s * 1000),
        )

    return make


def connect(instruments: InstrumentsConfig, simulation: SimulationConfig | None = None) -> Bench:
    """Construct every driver and run its connect-time queries (``initialize``)."""
    # Without a [simulation] table nothing is emulated but devices explicitly at address "sim".
    simulation = simulation or SimulationConfig(pylon_cameras=0)
    emulators = build_emulators(instruments, simulation)
    if simulation.pylon_cameras > 0:
        enable_pylon_emulation(simulation.pylon_cameras)
    closers: list[Callable[[], None]] = []
    try:
        serial: dict[str, Any] = {}
        for role, device in instruments.serial_devices.items():
            emulator = emulators.get(role)
            make_adapter = None if emulator is None else _emulator_link(emulator, device.timeout_s)
            driver = connect_serial(device, make_adapter)
            closers.append(driver.adapter.close)
            driver.initialize()
            serial[role] = driver
        camera = open_camera(instruments.camera)
        closers.append(camera.close)
        reference = open_camera(instruments.reference_camera)
        closers.append(reference.close)
    except BaseException:
        _close_all(closers)
        raise
    return Bench(
        serial["filter"], serial["rotator"], serial["stage"], camera, reference, emulators, closers
    )


@contextlib.contextmanager
def connected_bench(config_path: Path) -> Iterator[Bench]:
    """Connect the bench a config file describes; close every device on exit."""
    raw = read_toml(config_path)
    bench = connect(instruments_config(raw, config_path), simulation_config(raw, config_path))
    try:
        yield bench
    finally:
        bench.close()

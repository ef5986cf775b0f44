"""Serve a bench config's emulated serial devices on 127.0.0.1, for ``metascan sim serve``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from instruments.config import InstrumentsConfig, instruments_config, read_toml
from simulators.devices.sim_config import SimulationConfig, build_emulators, simulation_config
from simulators.devices.tcp_server import LOOPBACK, EmulatorServer


@dataclass(frozen=True)
class ServePlan:
    """Which role goes on which port (0 = any free port), and which roles are real devices."""

    ports: dict[str, int]
    skipped: dict[str, str]


def plan_ports(instruments: InstrumentsConfig, base_port: int | None = None) -> ServePlan:
    """A device is served if its address is ``sim`` or a socket on 127.0.0.1; a serial port or a
    remote host is a real device and is left alone."""
    ports: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for index, (role, device) in enumerate(instruments.serial_devices.items()):
        port = device.tcp_port
        if device.is_emulated:
            ports[role] = 0 if base_port is None else base_port + index
        elif port is not None and f"::{LOOPBACK}::" in device.address:
            ports[role] = port
        else:
            skipped[role] = device.address
    return ServePlan(ports, skipped)


@dataclass(frozen=True)
class Served:
    """The running servers by role, and the roles left to real devices (role → address)."""

    servers: dict[str, EmulatorServer]
    skipped: dict[str, str]


@contextlib.contextmanager
def serve_bench(config_path: Path, base_port: int | None = None) -> Iterator[Served]:
    """Start one TCP server per served device; stop them all on exit."""
    raw = read_toml(config_path)
    instruments = instruments_config(raw, config_path)
    simulation = simulation_config(raw, config_path) or SimulationConfig(pylon_cameras=0)
    plan = plan_ports(instruments, base_port)
    emulators = build_emulators(instruments, simulation, only_emulated=False)
    servers: dict[str, EmulatorServer] = {}
    try:
        for role, port in plan.ports.items():
            servers[role] = EmulatorServer(emulators[role], port).start()
        yield Served(servers, plan.skipped)
    finally:
        for server in servers.values():
            server.stop()

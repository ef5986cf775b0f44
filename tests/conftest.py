"""Fixtures shared by the driver and emulator tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

# pylon reads PYLON_CAMEMU once, when its transport-layer factory is first built: set it before any
# test imports pypylon, so the Basler driver runs against pylon's own camera emulation.
os.environ.setdefault("PYLON_CAMEMU", "2")

from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.emulator import Emulator
from simulators.devices.tcp_server import EmulatorServer

D = TypeVar("D")
Connect = Callable[..., Any]


@pytest.fixture(params=["in-process", "tcp"])
def connect_driver(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """``connect(DriverClass, emulator, **driver_kwargs)`` → a driver talking to ``emulator``
    either through the in-process adapter or over 127.0.0.1 TCP through pyvisa-py."""
    servers: list[EmulatorServer] = []
    drivers: list[Any] = []

    def connect(driver_cls: type[D], emulator: Emulator, **kwargs: Any) -> D:
        if request.param == "in-process":
            adapter = EmulatorAdapter(
                emulator,
                write_termination=driver_cls.WRITE_TERMINATION,  # type: ignore[attr-defined]
                read_termination=driver_cls.READ_TERMINATION,  # type: ignore[attr-defined]
            )
            driver = driver_cls(adapter, **kwargs)
        else:
            server = EmulatorServer(emulator).start()
            servers.append(server)
            driver = driver_cls(server.resource_name, visa_library="@py", **kwargs)
        drivers.append(driver)
        return driver

    yield connect
    for driver in drivers:
        driver.adapter.close()
    for server in servers:
        server.stop()


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("layout", "info", path)`` runs the ``metascan`` console entry point in-process and
    returns (exit code, stdout, stderr), the way a user's shell would see them."""
    from metascan.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["metascan", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run

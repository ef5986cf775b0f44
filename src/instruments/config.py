"""The instruments section of a bench config: which device sits where, and how to talk to it.

A bench config is one TOML file. This module validates the device tables (``[filter]``,
``[rotator]``, ``[stage]``, ``[camera]``, ``[reference_camera]``) and refuses a table nobody reads
(:data:`BENCH_TABLES`); the other tables (``[simulation]``, and the scan settings the acquisition
package adds) are validated by their own packages. Every field has a unit in its name and a range, so a typo or a wrong unit is caught before
any device is touched, with a one-line message naming the file, the field and the bad value.
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.config_model import ConfigModel

SIM_ADDRESS = "sim"
_VISA_RESOURCE = re.compile(r"^(ASRL\S*::INSTR|TCPIP\d*::[^:]+::\d+::SOCKET|GPIB\S+|USB\S+)$", re.I)
_TCP_SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.I)


class SerialDeviceConfig(ConfigModel):
    """What every serial (VISA) device needs: an address, a reply timeout and retries."""

    driver: str = Field(description="Driver name, a key of instruments.registry.SERIAL_DRIVERS.")
    address: str = Field(
        description='"sim" (in-process emulator), a VISA serial resource such as '
        '"ASRL/dev/ttyUSB0::INSTR", or a socket bridge "TCPIP::HOST::PORT::SOCKET".'
    )
    timeout_s: float = Field(1.0, gt=0.01, le=120)
    attempts: int = Field(3, ge=1, le=10, description="Tries for a repeatable command.")
    visa_library: str = Field("@py", description="PyVISA backend; '@py' is pyvisa-py.")

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        if value != SIM_ADDRESS and not _VISA_RESOURCE.match(value):
            raise ValueError(
                f"address {value!r} is neither 'sim' nor a VISA resource "
                "(ASRL...::INSTR or TCPIP::HOST::PORT::SOCKET)"
            )
        return value

    def driver_options(self) -> dict[str, Any]:
        """Constructor arguments of this device's driver beyond address, timeout and retries."""
        return {}

    @property
    def is_emulated(self) -> bool:
        return self.address == SIM_ADDRESS

    @property
    def tcp_port(self) -> int | None:
        """The port of a ``TCPIP::…::SOCKET`` address, None for other addresses."""
        match = _TCP_SOCKET.match(self.address)
        return int(match["port"]) if match else None


class FilterConfig(SerialDeviceConfig):
    driver: Literal["thorlabs.kurios"] = "thorlabs.kurios"
    settle_s: float = Field(
        0.05,
        ge=0,
        le=10,
        description="Least time after a retune before the filter counts as settled.",
    )
    wavelength_format: Literal["%.3f", "%d"] = Field(
        "%.3f", description="WL= argument format: the pyserial driver sends %.3f, the SDK int nm."
    )

    def driver_options(self) -> dict[str, Any]:
        return {"settle_s": self.settle_s, "wavelength_format": self.wavelength_format}


class RotatorConfig(SerialDeviceConfig):
    driver: Literal["thorlabs.ell14"] = "thorlabs.ell14"
    bus_address: str = Field("0", pattern=r"^[0-9A-Fa-f]$", description="Elliptec address 0-F.")
    move_pause_s: float = Field(0.1, ge=0, le=5, description="Pause before a move (pylablib).")
    move_timeout_s: float = Field(30.0, gt=0, le=300)

    def driver_options(self) -> dict[str, Any]:
        return {
            "address": self.bus_address,
            "move_pause_s": self.move_pause_s,
            "move_timeout_s": self.move_timeout_s,
        }


class StageConfig(SerialDeviceConfig):
    driver: Literal["asi.ms2000"] = "asi.ms2000"
    soft_limits_um: dict[Literal["x", "y", "z"], tuple[float, float]]
    has_z: bool = False
    poll_interval_s: float = Field(0.02, gt=0, le=1)

    def driver_options(self) -> dict[str, Any]:
        return {
            "soft_limits_um": dict(self.soft_limits_um),
            "has_z": self.has_z,
            "poll_interval_s": self.poll_interval_s,
        }

    @field_validator("soft_limits_um")
    @classmethod
    def _ordered(
        cls, limits: dict[Literal["x", "y", "z"], tuple[float, float]]
    ) -> dict[Literal["x", "y", "z"], tuple[float, float]]:
        for axis in ("x", "y"):
            if axis not in limits:
                raise ValueError(f"soft_limits_um needs an {axis} range")
        for axis, (lo, hi) in limits.items():
            if not lo < hi:
                raise ValueError(f"soft_limits_um.{axis} = [{lo}, {hi}] must have low < high")
        return limits


class CameraConfig(ConfigModel):
    driver: Literal["basler.pylon"] = "basler.pylon"
    serial: str = Field(min_length=1)
    bit_depth: Literal[8, 12, 16] = 16
    open_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="How long to look for the serial (a camera just plugged in "
        "takes seconds to enumerate).",
    )
    readout_margin_s: float = Field(
        1.0, gt=0, le=60, description="Per-frame grab timeout beyond the exposure."
    )
    grab_retries: int = Field(2, ge=0, le=10, description="Retries of a failed (incomplete) frame.")


class InstrumentsConfig(ConfigModel):
    """The five devices of the transmission microscope."""

    filter: FilterConfig
    rotator: RotatorConfig
    stage: StageConfig
    camera: CameraConfig
    reference_camera: CameraConfig

    @model_validator(mode="after")
    def _distinct_cameras(self) -> InstrumentsConfig:
        # pylon opens a camera by serial: two roles on one serial would be one camera seen
        # twice, and the lamp correction would divide the sample by itself.
        if self.camera.serial == self.reference_camera.serial:
            raise ValueError(
                f"camera and reference_camera have the same serial {self.camera.serial!r}; "
                "they must be two cameras"
            )
        for a, b in itertools.combinations(self.serial_devices.items(), 2):
            (role_a, dev_a), (role_b, dev_b) = a, b
            if dev_a.address != SIM_ADDRESS and dev_a.address == dev_b.address:
                raise ValueError(f"{role_a} and {role_b} have the same address {dev_a.address!r}")
        return self

    @property
    def serial_devices(self) -> dict[str, SerialDeviceConfig]:
        return {"filter": self.filter, "rotator": self.rotator, "stage": self.stage}


DEVICE_TABLES = tuple(InstrumentsConfig.model_fields)
# Every top-level table a bench config may hold: the devices' (here), the simulated bench's
# ([simulation], simulators.devices.sim_config) and the scan's (acquisition.scan_config
# SCAN_TABLES; a test keeps the two lists equal). Any other table is a typo, refused by name.
BENCH_TABLES = (
    *DEVICE_TABLES,
    "simulation",
    "optics",
    "scan",
    "exposure",
    "flat",
    "alignment",
    "runner",
    "dry_run",
)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file, or a one-line error naming the file and the line."""
    if not path.is_file():
        raise FileNotFoundError(f"bench config {path} does not exist")
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = [key for key in raw if key not in BENCH_TABLES]
    if unknown:
        close = {k: difflib.get_close_matches(k, BENCH_TABLES, n=1) for k in unknown}
        hints = ", ".join(
            f"[{k}]" + (f" (did you mean [{close[k][0]}]?)" if close[k] else "") for k in unknown
        )
        raise ValueError(
            f"{path}: unknown table {hints}; a bench config holds {', '.join(BENCH_TABLES)}"
        )
    return raw


def validation_message(path: Path, exc: ValidationError, table: str = "") -> str:
    """Pydantic's first error as one line: file, dotted field, message, bad value."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in ((table,) if table else ()) + tuple(error["loc"]))
    where = where or "(top level)"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    more = f" [and {exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return f"{path}: {where}: {error['msg']}{shown}{more}"


def instruments_config(raw: dict[str, Any], path: Path) -> InstrumentsConfig:
    tables = {key: raw[key] for key in DEVICE_TABLES if key in raw}
    try:
        return InstrumentsConfig.model_validate(tables)
    except ValidationError as exc:
        raise ValueError(validation_message(path, exc)) from None


def load_instruments_config(path: Path) -> InstrumentsConfig:
    return instruments_config(read_toml(path), path)

"""The ``[simulation]`` table of a bench config: how the emulated devices behave.

Device addresses stay in the instruments tables (``address = "sim"`` or a 127.0.0.1 socket); this
table only says how fast emulated time runs, how each emulator misbehaves, and any emulator
settings that differ from the reference figures (e.g. a Kurios without NARROW mode).

Random faults are keyed by (``seed``, device role, run, connection) (simulators.devices.faults):
the run is which invocation of a scan this is in its folder (:func:`next_simulation_run`), so a
``--resume`` draws new faults, and a scan folder replayed from scratch with the same seed sees the
same ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from common.atomic import atomic_output
from common.config_model import ConfigModel
from instruments.config import InstrumentsConfig, validation_message
from simulators.config_tables import dataclass_from_table
from simulators.devices.ell14 import Ell14Emulator, Ell14EmulatorConfig
from simulators.devices.emulator import Emulator
from simulators.devices.faults import FaultInjector, FaultRates
from simulators.devices.kurios import KuriosEmulator, KuriosEmulatorConfig
from simulators.devices.ms2000 import Ms2000Emulator, Ms2000EmulatorConfig
from simulators.microscope.bench_setup import MicroscopeTable


class FaultRatesConfig(ConfigModel):
    drop: float = Field(0.0, ge=0, le=1)
    garble: float = Field(0.0, ge=0, le=1)
    delay: float = Field(0.0, ge=0, le=1)
    disconnect: float = Field(0.0, ge=0, le=1)
    delay_s: float = Field(2.0, ge=0, le=60)


class DeviceSimulation(ConfigModel):
    faults: FaultRatesConfig = FaultRatesConfig()
    emulator: dict[str, Any] = Field(
        default_factory=dict, description="Fields of the device's emulator config dataclass."
    )


class SimulationConfig(ConfigModel):
    time_scale: float = Field(1.0, ge=1e-6, le=100, description="Wall s per device s.")
    seed: int = Field(0, ge=0)
    pylon_cameras: int = Field(2, ge=0, le=16, description="Cameras pylon emulates.")
    filter: DeviceSimulation = DeviceSimulation()
    rotator: DeviceSimulation = DeviceSimulation()
    stage: DeviceSimulation = DeviceSimulation()
    microscope: MicroscopeTable = MicroscopeTable()


def simulation_config(raw: dict[str, Any], path: Path) -> SimulationConfig | None:
    """The ``[simulation]`` table, or None for a bench that has none (a real lab bench)."""
    if "simulation" not in raw:
        return None
    try:
        return SimulationConfig.model_validate(raw["simulation"])
    except ValidationError as exc:
        raise ValueError(validation_message(path, exc, "simulation")) from None


#: In a scan folder: how many runs of a simulated bench have started there (next_simulation_run).
SIMULATION_RUNS = "simulation_runs.json"


def next_simulation_run(folder: Path) -> int:
    """The index of the run starting now among the simulated runs in ``folder`` (0 for the
    first), counted in :data:`SIMULATION_RUNS` there, which this call advances.

    The count lives in its own file rather than being read from the run record because a run can
    fail before its start document is written (a disconnect while connecting): counting starts
    would give the next run the same index, the same faults and the same failure, forever.
    """
    path = Path(folder) / SIMULATION_RUNS
    try:
        runs = int(json.loads(path.read_text())["runs"])
    except FileNotFoundError:
        runs = 0
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a simulation run count ({exc})") from None
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps({"runs": runs + 1}) + "\n")
    return runs


def build_emulators(
    instruments: InstrumentsConfig,
    simulation: SimulationConfig,
    *,
    only_emulated: bool = True,
    run: int = 0,
) -> dict[str, Emulator]:
    """One emulator per serial device whose address is ``sim`` (or every serial device).

    Settings a driver and its emulator must agree on (the Elliptec bus address, a Z axis) are
    taken from the instruments tables so the two cannot disagree. ``run`` keys the random faults
    (module docstring): 0 for a bench connected once, :func:`next_simulation_run` for a scan.
    """
    if run < 0:
        raise ValueError(f"run {run} must be >= 0")
    emulators: dict[str, Emulator] = {}
    for role, device in instruments.serial_devices.items():
        if only_emulated and not device.is_emulated:
            continue
        sim: DeviceSimulation = getattr(simulation, role)
        faults = FaultInjector(
            FaultRates(**sim.faults.model_dump()), seed=simulation.seed, stream=(role, "run", run)
        )
        common: dict[str, Any] = {
            "time_scale": simulation.time_scale,
            "faults": faults,
            "name": f"emulated {role}",
        }
        if role == "filter":
            config = dataclass_from_table(
                KuriosEmulatorConfig, sim.emulator, f"simulation.{role}.emulator"
            )
            emulators[role] = KuriosEmulator(config, **common)
        elif role == "rotator":
            config = dataclass_from_table(
                Ell14EmulatorConfig,
                sim.emulator,
                f"simulation.{role}.emulator",
                address=instruments.rotator.bus_address,
            )
            emulators[role] = Ell14Emulator(config, **common)
        else:
            config = dataclass_from_table(
                Ms2000EmulatorConfig,
                sim.emulator,
                f"simulation.{role}.emulator",
                has_z=instruments.stage.has_z,
            )
            emulators[role] = Ms2000Emulator(config, **common)
    return emulators

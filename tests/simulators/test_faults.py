"""Fault streams keyed by seed, device, run and connection: a reconnection or a resumed run draws
new faults, and the same seed and sequence of runs and connections replays the same ones; and the
emulator settings a bench's [simulation] tables reach."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from instruments.config import InstrumentsConfig
from simulators.devices.emulator import Emulator
from simulators.devices.faults import Fault, FaultInjector, FaultRates
from simulators.devices.ms2000 import Ms2000Emulator
from simulators.devices.sim_config import (
    SIMULATION_RUNS,
    SimulationConfig,
    build_emulators,
    next_simulation_run,
    simulation_config,
)

RATES = FaultRates(drop=0.1, garble=0.1, delay=0.1, disconnect=0.05)
REPLIES = 300


def draws(injector: FaultInjector) -> list[Fault | None]:
    """The faults of the next REPLIES replies on a new connection of ``injector``."""
    generator = injector.connect()
    return [injector.next_fault(generator) for _ in range(REPLIES)]


def first_disconnect(faults: list[Fault | None]) -> int:
    return faults.index(Fault.DISCONNECT)


def test_each_connection_draws_its_own_faults_and_a_seed_replays_them_all() -> None:
    injector = FaultInjector(RATES, seed=7, stream=("filter", "run", 0))
    first, second = draws(injector), draws(injector)
    assert injector.connections == 2
    assert first != second
    assert first_disconnect(first) != first_disconnect(second)
    again = FaultInjector(RATES, seed=7, stream=("filter", "run", 0))
    assert [draws(again), draws(again)] == [first, second]
    # All four kinds at roughly their rates.
    assert all(first.count(fault) > 0 for fault in Fault)


@pytest.mark.parametrize(
    "other",
    [
        {"seed": 8, "stream": ("filter", "run", 0)},
        {"seed": 7, "stream": ("stage", "run", 0)},
        {"seed": 7, "stream": ("filter", "run", 1)},
    ],
)
def test_seed_device_and_run_each_change_the_faults(other: dict[str, object]) -> None:
    base = draws(FaultInjector(RATES, seed=7, stream=("filter", "run", 0)))
    assert draws(FaultInjector(RATES, **other)) != base  # type: ignore[arg-type]


def test_scheduled_faults_come_first_whatever_the_connection() -> None:
    injector = FaultInjector(RATES, seed=1)
    injector.inject(Fault.GARBLE, 2)
    generator = injector.connect()
    assert [injector.next_fault(generator) for _ in range(2)] == [Fault.GARBLE, Fault.GARBLE]
    assert injector.injected[Fault.GARBLE] >= 2


def emulated_bench(seed: int, run: int, tables: str = "") -> dict[str, Emulator]:
    instruments = InstrumentsConfig.model_validate(
        {
            "filter": {"driver": "thorlabs.kurios", "address": "sim"},
            "rotator": {"driver": "thorlabs.ell14", "address": "sim"},
            "stage": {
                "driver": "asi.ms2000",
                "address": "sim",
                "soft_limits_um": {"x": [-1000.0, 1000.0], "y": [-1000.0, 1000.0]},
            },
            "camera": {"driver": "basler.pylon", "serial": "0815-0000"},
            "reference_camera": {"driver": "basler.pylon", "serial": "0815-0001"},
        }
    )
    rates = {"drop": 0.1, "garble": 0.1, "delay": 0.1, "disconnect": 0.05}
    simulation = SimulationConfig.model_validate(
        {"seed": seed, **{role: {"faults": rates} for role in ("filter", "rotator", "stage")}}
    )
    if tables:
        found = simulation_config(tomllib.loads(tables), Path("bench.toml"))
        assert found is not None
        simulation = found
    return build_emulators(instruments, simulation, run=run)


def test_a_resumed_run_does_not_replay_the_faults_that_stopped_the_last_one() -> None:
    before, after = (emulated_bench(seed=3, run=run) for run in (0, 1))
    for role in ("filter", "rotator", "stage"):
        stopped, resumed = draws(before[role].faults), draws(after[role].faults)
        assert first_disconnect(stopped) != first_disconnect(resumed), role
        # The same seed and run reproduce the whole session.
        assert draws(emulated_bench(seed=3, run=0)[role].faults) == stopped, role
    # Devices draw apart from each other even with one seed.
    again = emulated_bench(seed=3, run=0)
    assert draws(again["filter"].faults) != draws(again["stage"].faults)


def arrivals(emulator: Ms2000Emulator, commands: int = 60) -> list[bool]:
    """On a new session, whether each of ``commands`` ``V`` commands got its reply."""
    session = emulator.open_session()
    seen = []
    for _ in range(commands):
        session.write(b"V\r")
        seen.append(bool(session.take_due()[0]))  # V answers at once: due now or dropped
    session.close()
    return seen


def test_every_session_of_an_emulator_is_a_new_connection() -> None:
    def emulator() -> Ms2000Emulator:
        faults = FaultInjector(FaultRates(drop=0.5), seed=11, stream=("stage", "run", 0))
        return Ms2000Emulator(faults=faults)

    first = emulator()
    one, two = arrivals(first), arrivals(first)
    assert one != two and first.faults.connections == 2
    assert 0 < one.count(False) < len(one)
    replay = emulator()
    assert [arrivals(replay), arrivals(replay)] == [one, two]


def test_build_emulators_refuses_a_negative_run() -> None:
    with pytest.raises(ValueError, match="run -1"):
        emulated_bench(seed=0, run=-1)


def test_runs_are_counted_in_the_scan_folder(tmp_path: Path) -> None:
    assert [next_simulation_run(tmp_path) for _ in range(3)] == [0, 1, 2]
    assert (tmp_path / SIMULATION_RUNS).read_text() == '{"runs": 3}\n'
    (tmp_path / SIMULATION_RUNS).write_text("not json")
    with pytest.raises(ValueError, match="is not a simulation run count"):
        next_simulation_run(tmp_path)


def test_the_unverified_reply_forms_are_bench_settings() -> None:
    bench = emulated_bench(
        seed=0,
        run=0,
        tables="""
[simulation.filter.emulator]
set_reply = ""
[simulation.rotator.emulator]
motor_forward_periods = [147, 148]
[simulation.stage.emulator]
lcd_status = " "
info_silent_for_missing_axis = false
""",
    )
    assert bench["filter"].config.set_reply == ""  # type: ignore[attr-defined]
    assert bench["rotator"].config.motor_forward_periods == (147, 148)  # type: ignore[attr-defined]
    stage = bench["stage"].config  # type: ignore[attr-defined]
    assert (stage.lcd_status, stage.info_silent_for_missing_axis) == (" ", False)

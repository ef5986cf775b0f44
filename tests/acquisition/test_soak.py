"""Soak: a small chip scanned on a bench whose emulated filter, rotator and stage drop, garble,
delay and disconnect at high rates, resumed until done.

Each run of the scan in its folder draws its own faults (simulators.devices.sim_config keys them by
seed, device, run and connection), so a resume gets past the disconnect that stopped the last run
instead of replaying it at the same byte. The figures (faults injected by kind and device, driver
and step retries, resumes, wall seconds) are printed as one JSON line and repeated in the
assertion messages; run ``pytest -s tests/acquisition/test_soak.py`` to see them.

Nothing here depends on timing: a reply the loaded machine delivers late is one more retry, a
fault that stops a run is one more resume, and every assertion is about counts and bytes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scan_bench import bench_config, hypercube_files, same_data, write_chip

import simulators.simulated_bench as bench_module
from acquisition.run_record import last_documents
from acquisition.runner import run_scan
from acquisition.scan_stats import ScanFault
from instruments.errors import InstrumentError
from simulators.devices.faults import Fault
from simulators.devices.sim_config import build_emulators

ARRAYS = ["A0C"]
WAVELENGTHS = 29  # MOCLIP's 450..730 nm every 10 nm: enough replies for the faults to add up
BANDS = 2 * 2 * WAVELENGTHS  # flat and one tile, x and y
ROLES = ("filter", "rotator", "stage")
#: Per-reply probabilities of each fault on the emulated filter and stage; the rotator, which
#: answers a few dozen commands a scan, gets about twice the rates so that it sees faults too. ``delay_s`` lies past the drivers' 50 ms reply timeout and inside timeout + drain
#: (RetryPolicy.drain_s, 50 ms), so a late reply is always drained before the retry.
RATES = {"drop": 0.08, "garble": 0.09, "delay": 0.06, "disconnect": 0.01, "delay_s": 0.08}
ROLE_RATES = {
    "filter": RATES,
    "rotator": RATES | {"drop": 0.15, "garble": 0.15, "delay": 0.1, "disconnect": 0.02},
    "stage": RATES,
}
MIN_FAULTS = 100
MAX_RUNS = 30  # bounded: a scan that cannot get past its faults fails here instead of looping


def soak_config(folder: Path, rates: dict[str, dict[str, float]]) -> Path:
    """The small scan's bench and chip over 29 bands, with 50 ms reply timeouts and 1 ms settle
    pauses (wall time goes to the faults, not to waiting), and ``rates`` of faults on the
    filter, the rotator and the stage (role -> fault table)."""
    path = bench_config(folder)
    text = path.read_text()
    replacements = {
        "bands_nm = [450.0, 520.0, 590.0, 660.0, 730.0]": (
            "start_nm = 450.0\nstop_nm = 730.0\nstep_nm = 10.0"
        ),
        'driver = "thorlabs.kurios"\naddress = "sim"\ntimeout_s = 1.0\nsettle_s = 0.05': (
            'driver = "thorlabs.kurios"\naddress = "sim"\ntimeout_s = 0.05\nsettle_s = 0.001'
        ),
        'bus_address = "0"\ntimeout_s = 1.2': (
            'bus_address = "0"\ntimeout_s = 0.05\nmove_timeout_s = 0.2\nmove_pause_s = 0.01'
        ),
        'driver = "asi.ms2000"\naddress = "sim"': (
            'driver = "asi.ms2000"\naddress = "sim"\ntimeout_s = 0.05'
        ),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    # The shipped bench's all-zero [simulation.filter.faults] gives way to the soak's tables.
    text = re.sub(r"\[simulation\.filter\.faults\][^\[]*", "", text)
    for role in ROLES:
        table = "".join(f"{name} = {value}\n" for name, value in rates[role].items())
        text += f"\n[simulation.{role}.faults]\n{table}"
    path.write_text(text)
    return path


class _RetryLog(logging.Handler):
    """Counts the drivers' own retries (instruments.ascii_instrument logs each one)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "; retry " in record.getMessage():
            self.retries += 1


@pytest.fixture
def driver_retries() -> Iterator[_RetryLog]:
    handler = _RetryLog()
    logger = logging.getLogger("instruments")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def scan_until_done(
    config: Path, chip: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the scan, then ``--resume`` it after every stop, at most MAX_RUNS runs in all; return
    the faults and replies of every run's emulators (those of runs that failed while connecting
    included) and why each run that did not finish stopped."""
    emulators: list[tuple[str, Any]] = []

    def build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        built = build_emulators(*args, **kwargs)
        emulators.extend(built.items())
        return built

    monkeypatch.setattr(bench_module, "build_emulators", build)
    stops: list[str] = []
    finished = False
    for _ in range(MAX_RUNS):
        try:
            run_scan(config, chip, out, arrays=ARRAYS, resume=(out / "scan.json").exists())
        except (ScanFault, InstrumentError, ConnectionError) as exc:  # the last: at connect
            stops.append(type(exc).__name__ + ": " + str(exc).splitlines()[0])
            continue
        finished = True
        break
    faults: dict[str, Counter[str]] = {role: Counter() for role in ROLES}
    replies = Counter[str]()
    for role, emulator in emulators:
        faults[role].update({fault.value: n for fault, n in emulator.faults.injected.items()})
        replies[role] += emulator.commands_seen
    return {"faults": faults, "replies": replies, "stops": stops, "finished": finished}


def test_a_faulty_bench_scans_to_the_end_with_every_band_once_and_fault_free_data(
    tmp_path: Path, driver_retries: _RetryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    chip = write_chip(tmp_path)
    reference = tmp_path / "fault-free"
    reference.mkdir()
    clean = soak_config(reference, {role: {} for role in ROLES})
    run_scan(clean, chip, reference / "scan", arrays=ARRAYS)
    driver_retries.retries = 0

    soak = tmp_path / "soak"
    soak.mkdir()
    config = soak_config(soak, ROLE_RATES)
    out = soak / "scan"
    start = time.perf_counter()
    result = scan_until_done(config, chip, out, monkeypatch)
    wall_s = time.perf_counter() - start

    docs = last_documents(out / "run.jsonl")
    bands = Counter(
        (d["section"], d["array"], d["polarization"], d["wavelength_nm"])
        for d in docs
        if d["kind"] == "band"
    )
    by_kind = Counter[str]()
    for counts in result["faults"].values():
        by_kind.update(counts)
    runs = sum(d["kind"] == "start" for d in docs)
    figures = {
        "faults_injected": sum(by_kind.values()),
        "faults_by_kind": {fault.value: by_kind[fault.value] for fault in Fault},
        "faults_by_device": {role: sum(c.values()) for role, c in result["faults"].items()},
        "commands_by_device": dict(result["replies"]),
        "driver_retries": driver_retries.retries,
        "step_retries": sum(d["kind"] == "retry" for d in docs),
        "runs": len(result["stops"]) + int(result["finished"]),
        "runs_in_record": runs,  # fewer when a run failed while connecting
        "resumes": len(result["stops"]),
        "bands_in_record": sum(bands.values()),
        "wall_s": round(wall_s, 1),
    }
    print("soak figures:", json.dumps(figures))
    report = json.dumps(figures) + "\nstops:\n" + "\n".join(result["stops"])

    assert result["finished"], f"not done after {MAX_RUNS} runs: {report}"
    assert figures["faults_injected"] >= MIN_FAULTS, report
    assert all(by_kind[fault.value] > 0 for fault in Fault), report
    assert all(figures["faults_by_device"][role] > 0 for role in ROLES), report
    assert figures["resumes"] > 0, report  # the disconnects did stop runs, and resumes got past
    # Every band exactly once in the run record, across all runs.
    assert set(bands.values()) == {1} and sum(bands.values()) == BANDS, report
    assert docs[-1]["kind"] == "stop" and docs[-1]["exit_status"] == "success", report
    # Every hypercube is the fault-free scan's, byte for byte but for the timestamps.
    mine, theirs = hypercube_files(out), hypercube_files(reference / "scan")
    assert [p.name for p in mine] == [p.name for p in theirs], report
    for a, b in zip(mine, theirs, strict=True):
        assert same_data(a, b) == [], f"{a.name} differs from the fault-free scan; {report}"

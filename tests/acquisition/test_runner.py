"""The runner on the simulated bench: a whole scan, resume after SIGKILL with identical data, and
each kind of fault (emulator faults, lamp off, camera timeout, Ctrl-C) losing or duplicating
nothing that was completed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scan_bench import (
    BANDS_NM,
    CameraProxy,
    FilterProxy,
    bench_config,
    hypercube_files,
    open_tile,
    same_data,
    write_chip,
)

from acquisition.bench import Bench
from acquisition.run_record import last_documents
from acquisition.runner import run_scan
from acquisition.scan_stats import LampOut, ScanFault
from dataset.extraction import transmission_images
from dataset.hypercube_file import read_flat, read_hypercube
from dataset.quality import BandFlag
from dataset.quicklook import write_quicklook
from instruments.errors import DeviceTimeout
from simulators.devices.faults import Fault

BANDS = 2 * len(BANDS_NM)  # per file: x and y
ARRAYS = ["A0C"]
#: ``python -c`` this, then ``BANDS RECORD metascan-arguments...``: the metascan CLI, stopped
#: (SIGSTOP) by a thread of its own as soon as its run record holds BANDS bands. The watcher runs
#: in the scan's process, so however busy the machine is, the scan gets only a few milliseconds
#: of its own work past that band before it stands still and can be killed.
STOP_AFTER_BANDS = """
import os, signal, sys, threading, time
from pathlib import Path
from acquisition.run_record import last_documents
from metascan.cli import main

bands, record = int(sys.argv[1]), Path(sys.argv[2])

def stop_after_bands():
    while sum(d["kind"] == "band" for d in last_documents(record)) < bands:
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGSTOP)

threading.Thread(target=stop_after_bands, daemon=True).start()
sys.argv = ["metascan", *sys.argv[3:]]
sys.exit(main())
"""


def records(folder: Path, kind: str) -> list[dict[str, Any]]:
    return [d for d in last_documents(folder / "run.jsonl") if d["kind"] == kind]


def band_keys(folder: Path) -> Counter[tuple[Any, ...]]:
    return Counter(
        (d["section"], d["array"], d["polarization"], d["wavelength_nm"])
        for d in records(folder, "band")
    )


@pytest.fixture(scope="module")
def reference_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted scan: the ground the other tests compare with."""
    root = tmp_path_factory.mktemp("reference")
    chip = write_chip(root)
    summary = run_scan(
        bench_config(root), chip, root / "scan", arrays=ARRAYS, quicklook=write_quicklook
    )
    assert summary.stats.bands_acquired == 2 * BANDS
    return root / "scan"


def test_a_scan_writes_complete_readable_hypercubes(reference_scan: Path) -> None:
    names = [p.name for p in hypercube_files(reference_scan)]
    assert names == ["A0C_r0c0.h5", "flat.h5"]
    with open_tile(reference_scan) as ds, read_flat(reference_scan / "A0C_r0c0.h5") as flat:
        assert bool(ds.signal_completed.all()) and bool(flat.flat_completed.all())
        assert bool(ds.dark_completed.all()) and bool(ds.reference_dark_completed.all())
        assert int(ds.signal_band_flags.max()) == 0
        assert ds.attrs["array"] == "A0C" and ds.attrs["flat_file"] == "flat.h5"
        assert len(ds.attrs["pads"]) == 4
        # Auto-exposure put glass near 70 % of full scale (the ladder steps 19 %) in every band.
        full = 2**16 - 1
        level = np.percentile(flat.flat.values, 99.5, axis=(2, 3)) / full
        assert np.all((level > 0.55) & (level < 0.85)), level
        # Each tile band ran at its flat band's exposures, and a dark exists at each of them.
        np.testing.assert_array_equal(ds.signal_exposure_s.values, flat.flat_exposure_s.values)
        assert set(ds.signal_exposure_s.values.ravel()) == set(ds.dark_exposure_s.values)
        # Bare glass around the pads reads transmission 1 once dark, flat and lamp are divided out.
        t = transmission_images(reference_scan / "A0C_r0c0.h5").images[0, 2]
        corner = t[:20, :20]
        assert abs(float(np.median(corner)) - 1.0) < 0.01
    docs = last_documents(reference_scan / "run.jsonl")
    assert docs[0]["kind"] == "start" and docs[-1]["kind"] == "stop"
    assert docs[-1]["exit_status"] == "success"
    assert sum(band_keys(reference_scan).values()) == 2 * BANDS
    assert (reference_scan / "quicklook" / "A0C.png").stat().st_size > 10_000
    assert "INFO acquisition.runner: quick-look of A0C" in (reference_scan / "scan.log").read_text()


def test_sigkill_at_a_random_band_then_resume_gives_identical_data(
    reference_scan: Path, tmp_path: Path
) -> None:
    chip = write_chip(tmp_path)
    config = bench_config(tmp_path)
    out = tmp_path / "scan"
    kill_after = random.Random(os.getpid()).randint(1, 2 * BANDS - 2)
    command = [
        sys.executable,
        "-c",
        STOP_AFTER_BANDS,
        str(kill_after),
        str(out / "run.jsonl"),
        "scan",
        "--config",
        str(config),
        "--manifest",
        str(chip),
        "--output",
        str(out),
        "--arrays",
        "A0C",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # only ends a scan that hangs
    pid, status = 0, 0
    while pid == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
        pid, status = os.waitpid(process.pid, os.WUNTRACED | os.WNOHANG)
    stopped = pid != 0 and os.WIFSTOPPED(status)  # not ended, nor still running at the deadline
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert stopped, process.stderr.read() if process.stderr else status
    if process.stderr is not None:
        process.stderr.close()
    written = sum(band_keys(out).values())
    assert kill_after <= written < 2 * BANDS
    summary = run_scan(config, chip, out, arrays=ARRAYS, resume=True)
    # Nothing completed was taken again, nothing is missing, and every byte is as if never killed.
    assert summary.stats.bands_skipped >= kill_after
    assert summary.stats.bands_acquired + summary.stats.bands_skipped == 2 * BANDS
    assert set(band_keys(out).values()) == {1}
    starts = records(out, "start")
    assert len(starts) == 2 and len(starts[1]["previous_runs_without_stop"]) == 1
    for mine, theirs in zip(hypercube_files(out), hypercube_files(reference_scan), strict=True):
        assert same_data(mine, theirs) == [], mine.name


def test_lamp_outage_pauses_and_retakes_the_band(reference_scan: Path, tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"
    retunes = Counter[float]()
    polls: list[int] = []  # the lamp watch's reference grabs, from the outage until it is over

    def on_connect(bench: Bench) -> None:
        microscope = bench.microscope
        assert microscope is not None

        def on_retune(wavelength_nm: float) -> None:
            retunes[wavelength_nm] += 1
            # The tile's 590 nm band in x: the fifth retune to 590 (exposure sweep x and y,
            # flat x and y, tile x). Dark until the lamp watch has looked four times, however
            # long the band and the watch take on a busy machine.
            if wavelength_nm == 590.0 and retunes[wavelength_nm] == 5:
                microscope.lamp_outage(3600.0)

        def before_reference_grab(grab: int) -> None:
            if len(polls) == 5 or not (polls or records(out, "lamp_interrupted")):
                return
            polls.append(grab)
            if len(polls) == 5:
                microscope.lamp_outage(0.0)  # back for the fifth poll: it and the next end the wait

        bench.filter = FilterProxy(bench, on_retune)  # type: ignore[assignment]
        bench.reference_camera = CameraProxy(bench.reference_camera, before_reference_grab)  # type: ignore[assignment]

    config = bench_config(tmp_path, lamp_max_wait_s=60.0)  # the wait ends on the polls, not this
    summary = run_scan(config, chip, out, arrays=ARRAYS, on_connect=on_connect)
    assert summary.stats.lamp_interruptions == 1
    assert summary.stats.bands_acquired == 2 * BANDS
    assert [d["wavelength_nm"] for d in records(out, "lamp_interrupted")] == [590.0]
    assert len(polls) == 5
    assert records(out, "lamp_restored")[0]["waited_s"] > 0.2  # six lamp_poll_s sleeps at least
    b = BANDS_NM.index(590.0)
    with open_tile(out) as ds:
        flags = ds.signal_band_flags.values
    assert flags[0, b] == BandFlag.LAMP_INTERRUPTED
    assert np.count_nonzero(flags) == 1
    # The re-taken band is a good band: the same transmission as the uninterrupted scan's,
    # on glass and averaged over the field (pixel noise is ~1 %, averaged away here).
    t = transmission_images(out / "A0C_r0c0.h5").images[0, b]
    t_ref = transmission_images(reference_scan / "A0C_r0c0.h5").images[0, b]
    assert abs(float(np.median(t[:20, :20])) - 1.0) < 0.01
    assert abs(float(np.mean(t - t_ref))) < 0.005


def test_lamp_that_stays_off_stops_the_scan_resumable(tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"
    config = bench_config(tmp_path, lamp_max_wait_s=0.3)

    def on_connect(bench: Bench) -> None:
        microscope = bench.microscope
        assert microscope is not None
        calls = Counter[float]()

        def on_retune(wavelength_nm: float) -> None:
            calls[wavelength_nm] += 1
            if wavelength_nm == 660.0 and calls[wavelength_nm] == 3:
                microscope.lamp_outage(3600.0)

        bench.filter = FilterProxy(bench, on_retune)  # type: ignore[assignment]

    with pytest.raises(LampOut, match="no light on the reference camera"):
        run_scan(config, chip, out, arrays=ARRAYS, on_connect=on_connect)
    assert records(out, "stop")[-1]["exit_status"] == "failed"
    before = sum(band_keys(out).values())
    summary = run_scan(config, chip, out, arrays=ARRAYS, resume=True)
    assert summary.stats.bands_skipped == before
    assert set(band_keys(out).values()) == {1} and sum(band_keys(out).values()) == 2 * BANDS


def test_transient_camera_timeout_is_retried(tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"

    def on_connect(bench: Bench) -> None:
        def before(grab: int) -> None:
            if grab == 30:
                raise DeviceTimeout("camera 0815-0000", "grab 2 frames", "no frame in time")

        bench.camera = CameraProxy(bench.camera, before)  # type: ignore[assignment]

    summary = run_scan(bench_config(tmp_path), chip, out, arrays=ARRAYS, on_connect=on_connect)
    assert summary.stats.retries == 1 and summary.stats.bands_acquired == 2 * BANDS
    (retry,) = records(out, "retry")
    assert retry["device"] == "sample camera" and "no frame in time" in retry["error"]


def test_persistent_fault_stops_cleanly_and_resume_loses_nothing(tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"
    config = bench_config(tmp_path)

    def on_connect(bench: Bench) -> None:
        def before(grab: int) -> None:
            if grab >= 36:
                raise DeviceTimeout("camera 0815-0000", "grab 2 frames", "no frame in time")

        bench.camera = CameraProxy(bench.camera, before)  # type: ignore[assignment]

    with pytest.raises(ScanFault, match=r"sample camera: .*no frame in time.*3 attempts"):
        run_scan(config, chip, out, arrays=ARRAYS, on_connect=on_connect)
    stop = records(out, "stop")[-1]
    assert stop["exit_status"] == "failed" and "sample camera" in stop["reason"]
    before = sum(band_keys(out).values())
    assert 0 < before < 2 * BANDS
    summary = run_scan(config, chip, out, arrays=ARRAYS, resume=True)
    assert summary.stats.bands_skipped == before
    assert set(band_keys(out).values()) == {1} and sum(band_keys(out).values()) == 2 * BANDS


def test_emulator_link_faults_are_survived(tmp_path: Path) -> None:
    """Two dropped replies and a garbled one in a row from the filter and from the stage: more
    than the drivers' own retries take, so the runner's step retry carries the scan through."""
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"
    counts: dict[str, Any] = {}

    def on_connect(bench: Bench) -> None:
        for role in ("filter", "stage"):
            emulator = bench.emulators[role]
            emulator.faults.inject(Fault.DROP, 2)
            emulator.faults.inject(Fault.GARBLE, 1)
            counts[role] = emulator.faults.injected

    summary = run_scan(bench_config(tmp_path), chip, out, arrays=ARRAYS, on_connect=on_connect)
    assert summary.stats.bands_acquired == 2 * BANDS
    assert sum(counts["filter"].values()) == 3 and sum(counts["stage"].values()) == 3
    assert {d["device"] for d in records(out, "retry")} == {"filter", "stage"}
    assert set(band_keys(out).values()) == {1}


def test_ctrl_c_closes_the_run_record_as_aborted(tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    out = tmp_path / "scan"
    config = bench_config(tmp_path)

    def on_connect(bench: Bench) -> None:
        def before(grab: int) -> None:
            if grab == 40:
                raise KeyboardInterrupt

        bench.camera = CameraProxy(bench.camera, before)  # type: ignore[assignment]

    with pytest.raises(KeyboardInterrupt):
        run_scan(config, chip, out, arrays=ARRAYS, on_connect=on_connect)
    stop = records(out, "stop")[-1]
    assert stop["exit_status"] == "aborted"
    run_scan(config, chip, out, arrays=ARRAYS, resume=True)
    assert set(band_keys(out).values()) == {1} and sum(band_keys(out).values()) == 2 * BANDS


def test_saturation_and_low_signal_are_flagged(tmp_path: Path) -> None:
    chip = write_chip(tmp_path)
    # Exposure forced long: glass saturates in the bright bands; forced short: too little light.
    for exposure, flag in (
        ("min_s = 0.5\nmax_s = 2.0", BandFlag.SATURATED),
        ("min_s = 0.0001\nmax_s = 0.0002", BandFlag.LOW_SIGNAL),
    ):
        folder = tmp_path / flag.name.lower()
        folder.mkdir()
        out = folder / "scan"
        run_scan(bench_config(folder, exposure=exposure), chip, out, arrays=ARRAYS)
        with read_hypercube(out / "flat.h5") as flat:
            flags = flat.signal_band_flags.values
        assert np.count_nonzero(flags & flag) >= 2, flags


def test_cli_refuses_to_overwrite_and_to_resume_another_scan(
    reference_scan: Path, tmp_path: Path, cli: Any
) -> None:
    chip = write_chip(tmp_path)
    config = bench_config(tmp_path)
    args = ["scan", "--config", str(config), "--manifest", str(chip), "--arrays", "A0C"]
    code, _, err = cli(*args, "--output", str(reference_scan), "--no-progress")
    assert code == 2 and "already holds a scan; pass --resume" in err
    other = bench_config(tmp_path, exposure="target_fraction = 0.5")
    code, _, err = cli(
        "scan", "--config", str(other), "--manifest", str(chip), "--arrays", "A0C",
        "--output", str(reference_scan), "--resume", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "holds another scan (config_digest" in err
    assert len(err.strip().splitlines()) == 1
    identity = json.loads((reference_scan / "scan.json").read_text())
    assert identity["arrays"] == ["A0C"]

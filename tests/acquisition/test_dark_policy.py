"""The dark policy on the simulated bench: reused darks are the source's bytes, a resumed scan
under reuse is identical to an uninterrupted one, and per_scan takes fresh darks when the dark
moves (a drift injected at the camera: the simulated sensor's dark level holds still)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from scan_bench import CameraProxy, bench_config, hypercube_files, same_data

from acquisition.bench import Bench
from acquisition.run_record import last_documents
from acquisition.runner import ScanSummary, run_scan
from acquisition.scan_stats import ScanFault
from dataset.hypercube_file import read_hypercube_attrs
from instruments.errors import DeviceTimeout
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import write_manifest

ARRAYS = ["A0R0"]
DARK_VARIABLES = [
    *(f"{n}{s}" for n in ("dark", "reference_dark") for s in ("", "_frames", "_completed")),
    "dark_timestamp_s",
    "reference_dark_timestamp_s",
]


def write_chip(folder: Path) -> Path:
    """A0R0 is 10x10 pads of 6 µm: 2x2 tiles of the 40 µm field."""
    path = folder / "chip.h5"
    config = ChipConfig(thickness_nm=500, arrays=1, rows=10, cols=10, replicas=1)
    write_manifest(path, plan_chip(generate(100, seed=5), config))
    return path


def stored(path: Path, names: list[str]) -> dict[str, np.ndarray[Any, Any]]:
    with h5py.File(path, "r") as f:
        return {n: np.asarray(f[n][()]) for n in names}


def tiles(folder: Path) -> list[Path]:
    return [p for p in hypercube_files(folder) if p.name.startswith("A0R0_")]


@pytest.fixture(scope="module")
def per_array(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScanSummary]:
    root = tmp_path_factory.mktemp("per-array")
    summary = run_scan(bench_config(root), write_chip(root), root / "scan", arrays=ARRAYS)
    return root / "scan", summary


def test_per_array_tiles_hold_the_first_tiles_darks(per_array: tuple[Path, ScanSummary]) -> None:
    folder, summary = per_array
    files = tiles(folder)
    assert summary.tiles == 4 and len(files) == 4
    owners = {p.name: read_hypercube_attrs(p).darks_from for p in files}
    (first,) = [name for name, source in owners.items() if source is None]
    assert set(owners.values()) == {None, first}
    source = stored(folder / first, DARK_VARIABLES)
    assert source["dark_completed"].all() and source["reference_dark_completed"].all()
    for path in files:
        copy = stored(path, DARK_VARIABLES)
        for name in DARK_VARIABLES:
            np.testing.assert_array_equal(copy[name], source[name], err_msg=f"{path.name} {name}")
    per_file = source["dark_completed"].size + source["reference_dark_completed"].size
    s = summary.stats
    assert s.darks_acquired == 2 * per_file  # the flat's and the first tile's
    assert s.darks_copied == 3 * per_file
    events = [d for d in last_documents(folder / "run.jsonl") if d["kind"] == "darks_copied"]
    assert len(events) == 3 and all(e["copied"] == per_file for e in events)


def test_a_fault_mid_reuse_then_resume_gives_identical_data(
    per_array: tuple[Path, ScanSummary], tmp_path: Path
) -> None:
    reference, summary = per_array
    chip, config, out = write_chip(tmp_path), bench_config(tmp_path), tmp_path / "scan"
    grabs_before_last_tile = summary.stats.bands_acquired - 5  # inside the last tile's bands

    def on_connect(bench: Bench) -> None:
        def before(grab: int) -> None:
            if grab >= grabs_before_last_tile:
                raise DeviceTimeout("camera 0815-0000", "grab 2 frames", "no frame in time")

        bench.camera = CameraProxy(bench.camera, before)  # type: ignore[assignment]

    with pytest.raises(ScanFault):
        run_scan(config, chip, out, arrays=ARRAYS, on_connect=on_connect)
    resumed = run_scan(config, chip, out, arrays=ARRAYS, resume=True)
    assert resumed.stats.bands_skipped > 0 and resumed.stats.bands_acquired > 0
    for mine, theirs in zip(hypercube_files(out), hypercube_files(reference), strict=True):
        assert same_data(mine, theirs) == [], mine.name
        assert read_hypercube_attrs(mine) == read_hypercube_attrs(theirs)


def drifting_camera(offset_dn: float) -> Any:
    """``on_connect`` that adds ``offset_dn`` to every sample frame taken away from where the
    first grab was (the flat point): a sensor whose dark level moved after the flat."""

    def on_connect(bench: Bench) -> None:
        inner = bench.camera
        start: list[np.ndarray[Any, Any]] = []

        class Drifting(CameraProxy):
            def grab(self, frames: int, *, software_trigger: bool = True) -> Any:
                frame = inner.grab(frames, software_trigger=software_trigger)
                here = np.asarray(bench.stage.position_um[:2], dtype=float)
                if not start:
                    start.append(here)
                if np.hypot(*(here - start[0])) > 1.0:
                    frame = dataclasses.replace(frame, data=frame.data + offset_dn)
                return frame

        bench.camera = Drifting(inner, lambda grab: None)  # type: ignore[assignment]

    return on_connect


@pytest.mark.parametrize("offset_dn", [0.0, 60.0])
def test_per_scan_takes_fresh_darks_when_the_dark_drifts(tmp_path: Path, offset_dn: float) -> None:
    config = bench_config(tmp_path, scan='darks = "per_scan"\ndark_drift_fraction = 0.01\n')
    out = tmp_path / "scan"
    summary = run_scan(
        config, write_chip(tmp_path), out, arrays=ARRAYS, on_connect=drifting_camera(offset_dn)
    )
    (check,) = [d for d in last_documents(out / "run.jsonl") if d["kind"] == "dark_check"]
    assert summary.stats.dark_checks == 1 and check["source"] == [None, None]
    owners = {p.name: read_hypercube_attrs(p).darks_from for p in tiles(out)}
    first = min(owners)  # the serpentine starts at r0c0
    if offset_dn == 0:
        assert not check["drifted"] and check["fraction"] < 0.01
        assert set(owners.values()) == {"flat.h5"}
    else:
        # The dark's mean moved by the offset (the sensor's black level is ~1e3 DN at 16 bits).
        assert check["drifted"]
        assert check["mean_dn"] - check["source_mean_dn"] == pytest.approx(offset_dn, rel=0.05)
        assert owners[first] is None
        assert {v for k, v in owners.items() if k != first} == {first}
        fresh = stored(out / first, ["dark"])["dark"]
        flat = stored(out / "flat.h5", ["dark"])["dark"]
        assert np.mean(fresh - flat) == pytest.approx(offset_dn, rel=0.05)

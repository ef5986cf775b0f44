"""Acquisition throughput on the simulated bench, printed as JSON.

Two scans of one 20x20-pad array (one 128 µm field at 0.25 µm/px on a 512x512 camera, the
demo's array size), 29 bands x 2 polarisations, 4 frames per band, fsync per band:

* ``zero_latency``: emulators and cameras at 1e-6 of real time, so every second left is
  software: ``overhead_per_band_ms`` is wall time per band minus exposure x frames (which is ~0
  here), split into the grabs beyond the exposure (``grab_beyond_exposure_ms``: here the
  simulator rendering both cameras' frames, a cost the real bench does not have; at real time
  the readout and a reference exposure longer than the sample's), writing the band
  (``write_ms``) and the rest of the runner
  (``runner_ms``: device I/O through the real drivers, the plan, the run record).
* ``realistic``: emulators and cameras at real time (the ``[dry_run]`` device figures, exposures
  from the auto-exposure): ``pads_per_min`` (whole scan, and per tile once the scan-wide flat is
  done) and ``acquisition_over_modeled`` = wall time from the run's start to its last
  measurement / the sum of modelled device times of the steps executed
  (acquisition.time_model), goal <= 1.05; ``wall_over_modeled`` adds connecting the bench and
  drawing the quick-look.

* ``darks``: one 40x40-pad array (2x2 tiles of 512x512 px) scanned under each ``[scan] darks``
  policy (per_tile, per_array, per_scan) on the full simulated bench (noise, lamp drift, blur,
  fabrication), at 1e-6 of real time: ``pads_per_min`` from the modelled device time of the steps
  executed (the ``realistic`` scan measures that model against real time), the share of it in
  darks, and the processed spectra against ``sim truth`` of the same bench: per-pad RMSE over the
  pads processing keeps (median, 95th percentile). The simulated sensor's dark level does not
  drift (no temperature model), so per_scan's check never fires here; tests inject a drift.

Run: ``.venv/bin/python benchmarks/bench_acquisition.py [--skip-realistic] [--skip-darks]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.run_record import last_documents
from acquisition.runner import run_scan
from dataset.array_spectra_file import read_array_spectra
from dataset.process import process_scans
from dataset.truth_file import read_truth
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import write_manifest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARRAY = "A0R0"


def bench_file(folder: Path, time_scale: float) -> Path:
    text = (CONFIGS / "sim-bench.toml").read_text()
    text = text.replace("time_scale = 1.0 ", f"time_scale = {time_scale:g} ")
    if time_scale < 1:  # the filter's settle is a real-time wait in the runner and driver
        text = text.replace("settle_s = 0.05", "settle_s = 0.0")
    path = folder / f"bench_{time_scale:g}.toml"
    path.write_text(text + '\n[simulation.microscope]\ncamera_feed = "direct"\n')
    return path


def scan(folder: Path, chip: Path, time_scale: float) -> dict[str, Any]:
    start = time.perf_counter()
    out = folder / f"scan_{time_scale:g}"
    summary = run_scan(bench_file(folder, time_scale), chip, out, arrays=[ARRAY])
    wall = time.perf_counter() - start
    s = summary.stats
    bands = s.bands_acquired
    tile_pads = 20 * 20
    beyond = s.grab_wall_s - s.exposure_s * time_scale
    # The tile alone (its darks to its last band): the rate once the scan-wide flat is done.
    record = last_documents(out / "run.jsonl")
    docs = [d for d in record if d.get("array") == ARRAY]
    tile_s = max(d["time_s"] for d in docs) - min(d["time_s"] for d in docs)
    # Acquisition: from the run's start to its last measurement (without connecting the bench,
    # and without the quick-look drawn after the last band).
    measured = [d["time_s"] for d in record if d["kind"] in ("band", "dark", "autoexpose")]
    acquisition_s = max(measured) - record[0]["time_s"]
    return {
        "time_scale": time_scale,
        "bands": bands,
        "wall_s": round(wall, 2),
        "scan_wall_s": round(summary.wall_s, 2),
        "modeled_s": round(s.modeled_s, 2),
        "modeled_by_kind_s": {k: round(v, 2) for k, v in sorted(s.modeled_by_kind.items())},
        "wall_by_kind_s": {k: round(v, 2) for k, v in sorted(s.wall_by_kind.items())},
        "overhead_per_band_ms": round(1e3 * (s.band_wall_s - s.exposure_s * time_scale) / bands, 2),
        "grab_beyond_exposure_ms": round(1e3 * beyond / bands, 2),
        "write_ms": round(1e3 * s.write_wall_s / bands, 2),
        "runner_ms": round(1e3 * (s.band_wall_s - s.grab_wall_s - s.write_wall_s) / bands, 2),
        "pads_per_min": round(tile_pads / (summary.wall_s / 60.0), 1),
        "tile_s": round(tile_s, 2),
        "pads_per_min_per_tile": round(tile_pads / (tile_s / 60.0), 1),
        "acquisition_wall_s": round(acquisition_s, 2),
        "acquisition_over_modeled": round(acquisition_s / s.modeled_s, 3),
        "wall_over_modeled": round(summary.wall_s / s.modeled_s, 3),
    }


def dark_policies(folder: Path) -> dict[str, Any]:
    """Whole-scan pads/min and accuracy against truth under each dark policy (module doc)."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=40, cols=40, replicas=1)
    chip = folder / "chip40.h5"
    write_manifest(chip, plan_chip(generate(1600, seed=11), config))
    bench = bench_file(folder, 1e-6)
    truth_path = folder / "truth40.h5"
    cli = Path(sys.executable).parent / "metascan"
    subprocess.run([cli, "sim", "truth", "--manifest", chip, "--config", bench,
                    "--output", truth_path], check=True)  # fmt: skip
    truth = read_truth(truth_path)
    index = {
        key: i
        for i, key in enumerate(
            zip(truth.array_id, truth.replica, truth.row, truth.col, strict=True)
        )
    }
    relative = truth.relative_transmission()
    out: dict[str, Any] = {}
    for policy in ("per_tile", "per_array", "per_scan"):
        config_path = folder / f"bench_{policy}.toml"
        text = bench.read_text()
        assert text.count("\n[scan]\n") == 1
        config_path.write_text(text.replace("\n[scan]\n", f'\n[scan]\ndarks = "{policy}"\n'))
        scans = folder / f"scan_{policy}"
        summary = run_scan(config_path, chip, scans, arrays=[ARRAY])
        s = summary.stats
        spectra_dir = folder / f"spectra_{policy}"
        process_scans(scans, chip, spectra_dir)
        (path,) = sorted(spectra_dir.glob("*.h5"))
        spectra = read_array_spectra(path)
        keys = zip(spectra.array_id, spectra.replica, spectra.row, spectra.col, strict=True)
        rows = np.array([index[k] for k in keys])
        kept = spectra.flags == 0
        rmse = np.sqrt(np.mean((spectra.transmission - relative[rows]) ** 2, axis=(1, 2)))[kept]
        dark_s = s.modeled_by_kind.get("dark", 0.0)
        out[policy] = {
            "tiles": summary.tiles,
            "darks_acquired": s.darks_acquired,
            "darks_copied": s.darks_copied,
            "dark_checks": s.dark_checks,
            "modeled_s": round(s.modeled_s, 1),
            "dark_share": round(dark_s / s.modeled_s, 3),
            "pads_per_min": round(1600 / (s.modeled_s / 60.0), 1),
            "pads_kept": int(kept.sum()),
            "rmse_median": float(f"{np.median(rmse):.3g}"),
            "rmse_p95": float(f"{np.quantile(rmse, 0.95):.3g}"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-realistic", action="store_true", help="Only the fast scan.")
    parser.add_argument("--skip-darks", action="store_true", help="No dark-policy comparison.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-acquisition-") as tmp:
        folder = Path(tmp)
        config = ChipConfig(thickness_nm=500, arrays=1, rows=20, cols=20, replicas=1)
        chip = folder / "chip.h5"
        write_manifest(chip, plan_chip(generate(400, seed=7), config))
        out: dict[str, Any] = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "array": f"{ARRAY}: 20x20 pads, 1 tile, 29 bands x 2 polarisations, 4+4 frames",
            "zero_latency": scan(folder, chip, 1e-6),
        }
        if not args.skip_realistic:
            out["realistic"] = scan(folder, chip, 1.0)
            out["moclip_pads_per_min"] = 380
        if not args.skip_darks:
            out["darks"] = dark_policies(folder)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

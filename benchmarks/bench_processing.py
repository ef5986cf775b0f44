"""Extraction benchmark: prints one JSON object with the figures the processing issue asks for.

A simulated scan is rendered first (untimed; the virtual microscope's frames written in the
runner's folder layout by tests/dataset/scan_fixture.py): ``--arrays`` x 2 replicas of
``--pads`` x ``--pads`` arrays of 6 µm pads, one 512x512-pixel tile each (20x20 pads fill the
128 µm field), 29 bands in x and y, plus the scan's flat. Then ``process_scans`` (what
``metascan process`` runs) extracts every array with 1 and with ``--workers`` threads, each run
once to warm the page cache and then timed ``--repeat`` times (median):

* ``mb_per_s``: hypercube bytes (every tile file plus the flat file, as on disk) / wall time;
  ``cpu_s`` beside it is the process's CPU time (all threads), which other load on the machine
  does not inflate;
* ``pads_per_s``: pads written / wall time;
* ``tile_ms``: wall time per tile (one thread), and its parts for one tile: reading, registration,
  per-pad statistics.

The issue's target is >= 500 MB/s on 2 cores. Curation is timed in bench_curation.py.

Usage: python benchmarks/bench_processing.py [--arrays 2] [--pads 20] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dataset"))

from scan_fixture import ScanSettings, render_scan

from dataset.extraction import ExtractionSettings, FlatCache, extract_tile
from dataset.hypercube_file import read_section
from dataset.process import process_scans
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=2, help="source arrays (x2 replicas)")
    parser.add_argument("--pads", type=int, default=20, help="pads per array side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to render the scan")
    args = parser.parse_args()
    n = args.pads
    chip = ChipConfig(
        thickness_nm=178, arrays=args.arrays, rows=n, cols=n, replicas=2, companion_size=0
    )
    manifest = plan_chip(generate(args.arrays * n * n, seed=1), chip)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scans = Path(tmp) / "scans"
        start = time.perf_counter()
        scan = render_scan(scans, manifest, ScanSettings(sensor_px=512, frames=1, dark_frames=1))
        render_s = time.perf_counter() - start
        tiles = sum(len(v) for v in scan.tiles.values())
        out: dict[str, object] = {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "arrays": len(scan.tiles),
            "tiles": tiles,
            "pads_per_tile": n * n,
            "tile_px": 512,
            "bands": 58,
            "render_s": round(render_s, 1),
        }
        settings = ExtractionSettings()
        for workers in sorted({1, args.workers}):
            runs, cpu = [], []
            for k in range(args.repeat + 1):
                cpu0 = time.process_time()
                summary = process_scans(
                    scans, scan.manifest_path, Path(tmp) / f"spectra{workers}", settings,
                    workers=workers,
                )  # fmt: skip
                if k:  # the first run warms the page cache
                    runs.append(summary)
                    cpu.append(time.process_time() - cpu0)
            wall = statistics.median(r.seconds for r in runs)
            mb = runs[0].hypercube_bytes / 1e6
            out[f"workers_{workers}"] = {
                "hypercube_mb": round(mb, 1),
                "wall_s": round(wall, 3),
                "cpu_s": round(statistics.median(cpu), 3),
                "mb_per_s": round(mb / wall, 1),
                "pads_per_s": round(runs[0].pads / wall, 1),
                "max_registration_residual_px": round(
                    max(a.registration_residual_px for a in runs[0].arrays), 4
                ),
            }
        # One tile's parts, single thread.
        name, paths = next(iter(scan.tiles.items()))
        flats = FlatCache()
        extract_tile(paths[0], manifest, name, settings, flats)
        t0 = time.perf_counter()
        read_section(paths[0])
        t1 = time.perf_counter()
        tile = extract_tile(paths[0], manifest, name, settings, flats)
        t2 = time.perf_counter()
        out["one_tile"] = {
            "read_ms": round(1e3 * (t1 - t0), 1),
            "extract_ms_total": round(1e3 * (t2 - t1), 1),
            "pads": int(tile.pad_rows.size),
            "pads_in_array": int(manifest.pads_of(name).size),
            "registration": tile.registration.describe(),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""Curation benchmark: prints one JSON object with the seconds the curation issue asks for.

A synthetic chip of ``--arrays`` arrays x 2 replicas x 100x100 pads (100,000 dataset pads and
50,000 designs by default; 29 bands, x and y; 0.003 rms noise; 1 % of designs contaminated on
one replica) is curated

* in memory: ``curate()`` on ArraySpectra objects (median of --repeat runs), then
  ``CurationResult.to_pairs()`` (rasterising the kept designs) on its own;
* end to end through files: the array-spectra files and the manifest are written first
  (untimed), then ``metascan curate``'s function runs on them (read, curate, report, pairs,
  write), with the phases timed separately as well.

Usage: python benchmarks/bench_curation.py [--arrays 5] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from dataset.array_spectra_file import ArraySpectra, read_array_spectra, write_array_spectra
from dataset.curate_cli import curate_cmd
from dataset.curation import curate
from dataset.curation_report import write_report
from dataset.pairs_file import write_pairs
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, write_manifest

BANDS = 29
NOISE = 0.003
T = TypeVar("T")


def synthetic_chip(arrays: int) -> tuple[ChipManifest, list[ArraySpectra]]:
    config = ChipConfig(
        thickness_nm=178.0,
        arrays=arrays,
        rows=100,
        cols=100,
        replicas=2,
        companion_size=0,
        chip_id="bench",
    )
    manifest = plan_chip(generate(arrays * 10_000, seed=1), config)
    wavelength = np.linspace(450.0, 730.0, BANDS)
    rng = np.random.default_rng(0)
    ids = manifest.designs.design_id
    phase = rng.uniform(0, 2 * np.pi, (ids.size, 2, 1))
    truth = 0.5 + 0.3 * np.sin(2 * np.pi * wavelength / 120.0 + phase)
    row_of = manifest.designs.index_of
    bad = rng.random(ids.size) < 0.01
    parts = []
    pads = manifest.pads
    for a, name in enumerate(manifest.arrays.name):
        sel = (pads.array_id == manifest.arrays.array_id[a]) & (
            pads.replica == manifest.arrays.replica[a]
        )
        sel &= pads.role == manifest.arrays.role[a]
        table = pads.select(sel)
        rows = row_of(table.design_id)
        t = truth[rows] + rng.normal(0.0, NOISE, (len(table), 2, BANDS))
        if manifest.arrays.replica[a] == 1:
            t[bad[rows]] *= 0.5
        n = len(table)
        parts.append(
            ArraySpectra.from_pads(
                table,
                transmission=t,
                spread=np.full_like(t, 0.01),
                pixel_count=np.full((n, 2), 300),
                flags=np.zeros(n),
                wavelength_nm=wavelength,
                chip_id="bench",
                array_name=name,
                hypercubes=[f"{name}.nc"],
                registration_method="synthetic",
                registration_residual_px=0.0,
                erosion_margin_um=1.0,
                flag_thresholds={},
                reference_compensation=True,
            )
        )
    return manifest, parts


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """(what ``fn`` returned, seconds it took)."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arrays", type=int, default=5, help="arrays of 100x100 pads x 2 replicas")
    parser.add_argument("--repeat", type=int, default=3, help="in-memory runs (median taken)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    args = parser.parse_args()
    manifest, parts = synthetic_chip(args.arrays)
    pads = sum(len(p) for p in parts)
    manifests = {"bench": manifest}
    curate(parts[:2], manifests)  # warm-up
    runs = [timed(lambda: curate(parts, manifests))[1] for _ in range(args.repeat)]
    result = curate(parts, manifests)
    pairs, to_pairs_s = timed(result.to_pairs)
    out: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "pads": pads,
        "designs": len(result),
        "designs_by_decision": result.design_counts(),
        "curate_in_memory_s": round(float(np.median(runs)), 3),
        "curate_in_memory_pads_per_s": round(pads / float(np.median(runs))),
        "to_pairs_rasterize_s": round(to_pairs_s, 3),
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        write_manifest(d / "chip.h5", manifest)
        (d / "spectra").mkdir()
        for p in parts:
            write_array_spectra(d / "spectra" / f"{p.array_name}.h5", p, {"manifest": "chip.h5"})
        files = sorted((d / "spectra").glob("*.h5"))
        phases: dict[str, float] = {}
        spectra, phases["read_spectra_s"] = timed(lambda: [read_array_spectra(f) for f in files])
        result2, phases["curate_s"] = timed(lambda: curate(spectra, manifests))
        _, phases["report_s"] = timed(lambda: write_report(result2, d / "r"))
        pairs2, phases["to_pairs_s"] = timed(result2.to_pairs)
        _, phases["write_pairs_s"] = timed(lambda: write_pairs(d / "p.h5", pairs2))
        out["phases_through_files_s"] = {k: round(v, 3) for k, v in phases.items()}
        with contextlib.redirect_stdout(io.StringIO()):
            _, total = timed(
                lambda: curate_cmd(
                    [d / "spectra"], d / "pairs.h5", manifest=[d / "chip.h5"], report=d / "report"
                )
            )
        out["end_to_end_metascan_curate_s"] = round(total, 3)
        out["pairs_file_mb"] = round((d / "pairs.h5").stat().st_size / 1e6, 1)
    out["pairs"] = len(pairs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

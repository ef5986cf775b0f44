"""Layout benchmark: prints one JSON object with the figures the layout issue asks for.

* valid designs generated per second (checker included), rasters per second;
* seconds and MB to write a MOCLIP-scale chip: three source arrays x two replicas = six
  151x151 arrays (136,806 dataset pads, plus companions) with its manifest, as GDS and as OASIS;
* seconds of KLayout DRC on a one-array chip (151x151 pads).

Usage: python benchmarks/bench_layout.py [--designs N] [--side 151]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from layout.chip import ChipConfig, plan_chip
from layout.drc import run_drc
from layout.gds_writer import write_chip
from layout.generator import generate
from layout.raster import rasterize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--designs", type=int, default=100_000, help="designs for the generator/raster figures"
    )
    parser.add_argument("--side", type=int, default=151, help="pads per array side")
    args = parser.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    }

    generate(2000, seed=99)  # warm-up: imports, first allocations
    t = time.perf_counter()
    library = generate(args.designs, seed=1)
    dt = time.perf_counter() - t
    out["designs"] = args.designs
    out["designs_per_s"] = round(args.designs / dt)

    rasterize(library.take(slice(0, 2000)))
    # Batches of 20,000 (a 330 MB output each), as a pairs file or data loader would ask for them;
    # one call for all designs is reported too: there first-touch page faults of the fresh
    # multi-GB buffer, not the rasterizer, set the pace.
    batch = 20_000
    t = time.perf_counter()
    for start in range(0, len(library), batch):
        rasterize(library.take(slice(start, start + batch)))
    out["rasters_per_s"] = round(len(library) / (time.perf_counter() - t))
    t = time.perf_counter()
    images = rasterize(library)
    out["rasters_per_s_single_call"] = round(len(library) / (time.perf_counter() - t))
    del images

    side = args.side
    chip_lib = generate(3 * side * side, seed=2)
    cfg = ChipConfig(
        thickness_nm=500, arrays=3, rows=side, cols=side, replicas=2, companion_size=10
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for fmt in ("gds", "oas"):
            t = time.perf_counter()
            manifest = plan_chip(chip_lib, cfg)
            write_chip(manifest, cfg, d / f"chip.{fmt}", d / f"chip_{fmt}.h5", fmt)  # type: ignore[arg-type]
            out[f"chip_{fmt}_write_s"] = round(time.perf_counter() - t, 2)
            out[f"chip_{fmt}_mb"] = round((d / f"chip.{fmt}").stat().st_size / 1e6, 2)
        out["chip_manifest_mb"] = round((d / "chip_gds.h5").stat().st_size / 1e6, 2)
        out["chip_dataset_pads"] = int(3 * 2 * side * side)

        one = ChipConfig(
            thickness_nm=500, arrays=1, rows=side, cols=side, replicas=1, companion_size=10
        )
        write_chip(plan_chip(chip_lib, one), one, d / "one.gds", d / "one.h5")
        result = run_drc(d / "one.gds")
        out["drc_one_array_s"] = round(result.seconds, 2)
        out["drc_one_array_polygons"] = result.polygons_checked
        out["drc_one_array_violations"] = len(result.markers)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

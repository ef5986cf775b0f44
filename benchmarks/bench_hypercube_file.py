"""Hypercube file benchmark: prints one JSON object with the figures the hypercube issue asks for.

* seconds and MB/s to create a file (every variable allocated and filled with NaN up front);
* band write throughput in MB/s (float32 image bytes / wall time per ``write_band``) for 512x512
  and 2048x2048 bands, reopening the file per band (the default) or keeping it open, with and
  without an fsync per band (``durable``);
* the reopen cost per band: the difference of the two, in ms (median of --repeat runs).

Usage: python benchmarks/bench_hypercube_file.py [--bands 16] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dataset.hypercube_file import HypercubeLayout, HypercubeWriter

ATTRS = {
    "chip_id": "bench",
    "x_um": 0.0,
    "y_um": 0.0,
    "pixel_size_um": 3.45,
    "instruments": {},
    "config": {},
    "array_id": 0,
    "tile_row": 0,
    "tile_col": 0,
}


def one_run(
    d: Path, side: int, bands: int, keep_open: bool, durable: bool
) -> tuple[float, float, float]:
    """(create seconds, file MB, mean seconds per band write)."""
    layout = HypercubeLayout.build(
        ("x", "y"), 450.0 + 10.0 * np.arange(bands // 2), side, side, [0.01]
    )
    rng = np.random.default_rng(0)
    images = [rng.random((side, side), dtype=np.float32) * 4000 for _ in range(4)]
    path = d / f"cube_{side}_{keep_open}_{durable}.nc"
    t = time.perf_counter()
    writer = HypercubeWriter.create(path, layout, ATTRS, keep_open=keep_open, durable=durable)
    create_s = time.perf_counter() - t
    t = time.perf_counter()
    with writer:
        for i, (pol, wl) in enumerate(
            (p, w) for p in layout.polarizations for w in layout.wavelength_nm
        ):
            writer.write_band(
                "signal",
                pol,
                float(wl),
                images[i % 4],
                reference=1000.0,
                reference_exposure_s=0.01,
                exposure_s=0.02,
                frames=4,
                timestamp_s=time.time(),
            )
    per_band = (time.perf_counter() - t) / (2 * (bands // 2))
    size_mb = path.stat().st_size / 1e6
    path.unlink()
    return create_s, size_mb, per_band


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bands", type=int, default=16, help="bands per file (both polarizations)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median taken)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    args = parser.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        one_run(d, 64, 4, False, False)  # warm-up: imports, first allocations
        for side in (512, 2048):
            mb = side * side * 4 / 1e6
            out[f"band_{side}_mb"] = round(mb, 2)
            per: dict[tuple[bool, bool], float] = {}
            for keep_open in (False, True):
                for durable in (True, False):
                    runs = [
                        one_run(d, side, args.bands, keep_open, durable) for _ in range(args.repeat)
                    ]
                    create_s, size_mb, _ = runs[0]
                    per_band = float(np.median([r[2] for r in runs]))
                    per[keep_open, durable] = per_band
                    tag = f"{side}_{'keep_open' if keep_open else 'reopen'}"
                    tag += "_fsync" if durable else "_nofsync"
                    out[f"write_{tag}_mb_per_s"] = round(mb / per_band, 1)
                    out[f"write_{tag}_ms_per_band"] = round(per_band * 1e3, 2)
                    if keep_open is False and durable is True:
                        out[f"create_{side}_s"] = round(create_s, 3)
                        out[f"create_{side}_mb_per_s"] = round(size_mb / create_s, 1)
            for durable in (True, False):
                tag = "fsync" if durable else "nofsync"
                out[f"reopen_cost_{side}_{tag}_ms_per_band"] = round(
                    (per[False, durable] - per[True, durable]) * 1e3, 2
                )
    out["bands_per_file"] = 2 * (args.bands // 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

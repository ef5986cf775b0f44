"""RCWA convergence study: error against the most converged reference, beside the cost.

A fixed set of designs (``generate(6, seed=24)``: periods 300-600 nm, rectangles, ellipses and
two rings), a-Si at 178 nm, 8 bands 450-730 nm every 40 nm, x and y. Every setting is solved
with the project's ``rcwa`` model (torcwa, Laurent's rule) through its per-design cache, so an
interrupted study resumes and a repeated one prints from the cache; the solve time of each
setting is kept in a JSON file beside the cache, because a cached result has no cost to time.

The reference is the highest order solved (``--reference-order``, 11 by default: 529 harmonics
per polarization). The default orders of the rcwa model are the smallest N whose rms error
against it is at most ``--target-rms`` (0.02). Raster resolution is studied at fixed orders:
64 and 256 pixels against the 128 raster that is the design representation (MOCLIP's).

Usage: python benchmarks/spectral_convergence.py --cache /tmp/conv.h5 [--orders 2,3,4,5,6,7,9]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from layout.generator import generate
from simulators.spectral import get_model

WAVELENGTH_NM = np.arange(450.0, 731.0, 40.0)
THICKNESS_NM = 178.0
MATERIAL = "a-Si"


def solve(orders: int, raster: int, cache: Path, timings: dict[str, float]) -> np.ndarray:
    """Spectra (6, 2, 8) at one setting; the first solve's seconds per design-band are kept."""
    designs = generate(6, seed=24)
    model = get_model("rcwa", orders=(orders, orders), raster_size=raster, cache_path=cache)
    key = f"N{orders}_r{raster}"
    t = time.perf_counter()
    out = model.spectra(designs, WAVELENGTH_NM, thickness_nm=THICKNESS_NM, material=MATERIAL)
    seconds = time.perf_counter() - t
    if key not in timings:
        timings[key] = seconds / (len(designs) * WAVELENGTH_NM.size)
    return out


def study(
    cache: Path,
    orders: list[int],
    reference_order: int,
    rasters: list[int],
    raster_orders: list[int],
    target_rms: float,
) -> dict[str, Any]:
    """The convergence table as a dict (printed as JSON by ``main``)."""
    timing_path = cache.with_suffix(".timings.json")
    timings: dict[str, float] = json.loads(timing_path.read_text()) if timing_path.exists() else {}

    def run(n: int, raster: int) -> np.ndarray:
        out = solve(n, raster, cache, timings)
        timing_path.write_text(json.dumps(timings, indent=1))
        return out

    results = {n: run(n, 128) for n in orders}
    reference = run(reference_order, 128)
    rows = []
    for n in orders:
        diff = results[n] - reference
        rows.append(
            {
                "orders": n,
                "harmonics": (2 * n + 1) ** 2,
                "rms": round(float(np.sqrt(np.mean(diff**2))), 4),
                "max_abs": round(float(np.abs(diff).max()), 4),
                "s_per_design_band": round(timings[f"N{n}_r128"], 4),
                "s_per_design_29_bands": round(timings[f"N{n}_r128"] * 29, 2),
            }
        )
    raster_rows = []
    for n in raster_orders:
        base = results[n] if n in results else run(n, 128)
        for r in rasters:
            other = run(n, r)
            raster_rows.append(
                {
                    "orders": n,
                    "raster": r,
                    "rms_vs_raster_128": round(float(np.sqrt(np.mean((other - base) ** 2))), 4),
                    "s_per_design_band": round(timings[f"N{n}_r{r}"], 4),
                }
            )
    chosen = next((r["orders"] for r in rows if r["rms"] <= target_rms), None)
    return {
        "designs": "generate(6, seed=24)",
        "material": MATERIAL,
        "thickness_nm": THICKNESS_NM,
        "wavelength_nm": WAVELENGTH_NM.tolist(),
        "reference_orders": reference_order,
        "reference_s_per_design_band": round(timings[f"N{reference_order}_r128"], 3),
        "target_rms": target_rms,
        "smallest_orders_meeting_target": chosen,
        "orders_table": rows,
        "raster_table": raster_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--orders", default="2,3,4,5,6,7,9")
    parser.add_argument("--reference-order", type=int, default=11)
    parser.add_argument("--rasters", default="64,256")
    parser.add_argument("--raster-orders", default="5")
    parser.add_argument("--target-rms", type=float, default=0.02)
    args = parser.parse_args()
    out = study(
        args.cache,
        [int(v) for v in args.orders.split(",")],
        args.reference_order,
        [int(v) for v in args.rasters.split(",")],
        [int(v) for v in args.raster_orders.split(",")],
        args.target_rms,
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

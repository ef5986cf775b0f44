"""Virtual-chip benchmark: prints one JSON object.

Builds a chip manifest of ``--arrays`` arrays x ``--replicas`` replicas of ``--size`` x
``--size`` pads (plus 10x10 companions and fiducials) from generated designs, then times the
whole truth computation with the analytic model: per-pad dilation draws, the spectral solve on
the fine grid of the chosen bandwidth mode, and the passband averaging to 29 bands.
``pads_per_s`` counts every row of the pad table; ``unique_solves_per_s`` the (design, bias)
pairs actually sent to the model (all of them, with a non-zero dilation spread).

``--replica-spread``: the measurement behind ``FabricationConfig.dilation_sd_nm``'s default
(``simulators/virtual_chip.py``'s docstring): for each pad-to-pad dilation spread, the fraction
of designs whose two replicas' band spectra (relative to glass) differ by an MSE above 1e-3,
MOCLIP's replica-agreement threshold, on the same chip and in the default film.

Usage: python benchmarks/bench_virtual_chip.py [--arrays 3] [--replicas 2] [--size 60]
[--replica-spread]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, Role
from simulators.passband import fine_grid
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--bandwidth", default="narrow", choices=["narrow", "medium", "wide"])
    parser.add_argument("--replica-spread", action="store_true", help="replica MSE vs spread")
    parser.add_argument("--spreads-nm", default="0,1,2,3,5,10")
    args = parser.parse_args()
    config = ChipConfig(
        thickness_nm=178, arrays=args.arrays, rows=args.size, cols=args.size,
        replicas=args.replicas, seed=1,
    )  # fmt: skip
    library = generate(args.arrays * args.size**2, seed=1)
    manifest = plan_chip(library, config)
    mode = BandwidthMode(args.bandwidth)
    if args.replica_spread:
        spreads = [float(v) for v in args.spreads_nm.split(",")]
        print(json.dumps(replica_spread(manifest, mode, spreads)))
        return
    start = time.perf_counter()
    chip = VirtualChip(manifest, AnalyticModel(), FabricationConfig(seed=1))
    truth = make_truth(chip, mode=mode)
    elapsed = time.perf_counter() - start
    pads = len(truth)
    print(
        json.dumps(
            {
                "pads": pads,
                "bandwidth_mode": mode.value,
                "fine_grid_points": int(fine_grid(mode=mode).size),
                "seconds": round(elapsed, 2),
                "pads_per_s": round(pads / elapsed),
                "unique_solves_per_s": round(int((truth.role != Role.FIDUCIAL).sum()) / elapsed),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )


def replica_spread(
    manifest: ChipManifest, mode: BandwidthMode, spreads_nm: list[float]
) -> dict[str, object]:
    """Per spread: the share of designs with replica MSE > 1e-3, and that MSE's quantiles."""
    pads = manifest.pads
    data = np.flatnonzero(pads.role == Role.DATASET)
    by_design: dict[int, list[int]] = {}
    for row in data:
        by_design.setdefault(int(pads.design_id[row]), []).append(int(row))
    pairs = np.array([rows[:2] for rows in by_design.values() if len(rows) >= 2])
    out: dict[str, object] = {
        "designs": len(pairs),
        "material": manifest.material,
        "thickness_nm": manifest.thickness_nm,
        "threshold_mse": 1e-3,
    }
    for sd in spreads_nm:
        chip = VirtualChip(manifest, AnalyticModel(), FabricationConfig(seed=1, dilation_sd_nm=sd))
        spectra, glass = chip.band_transmission(mode=mode)
        relative = spectra / glass
        mse = np.mean((relative[pairs[:, 0]] - relative[pairs[:, 1]]) ** 2, axis=(1, 2))
        out[f"sd_{sd:g}nm"] = {
            "share_above_1e-3": round(float(np.mean(mse > 1e-3)), 4),
            "mse_q50": float(f"{np.median(mse):.3g}"),
            "mse_q95": float(f"{np.quantile(mse, 0.95):.3g}"),
        }
    return out


if __name__ == "__main__":
    main()

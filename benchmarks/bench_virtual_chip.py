"""Virtual-chip benchmark: prints one JSON object.

Builds a chip manifest of ``--arrays`` arrays x ``--replicas`` replicas of ``--size`` x
``--size`` pads (plus 10x10 companions and fiducials) from generated designs, then times the
whole truth computation with the analytic model: per-pad dilation draws, the spectral solve on
the fine grid of the chosen bandwidth mode, and the passband averaging to 29 bands.
``pads_per_s`` counts every row of the pad table; ``unique_solves_per_s`` the (design, bias)
pairs actually sent to the model (all of them, with a non-zero dilation spread).

Usage: python benchmarks/bench_virtual_chip.py [--arrays 3] [--replicas 2] [--size 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import Role
from simulators.passband import fine_grid
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--bandwidth", default="narrow", choices=["narrow", "medium", "wide"])
    args = parser.parse_args()
    config = ChipConfig(
        thickness_nm=178, arrays=args.arrays, rows=args.size, cols=args.size,
        replicas=args.replicas, seed=1,
    )  # fmt: skip
    library = generate(args.arrays * args.size**2, seed=1)
    manifest = plan_chip(library, config)
    mode = BandwidthMode(args.bandwidth)
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


if __name__ == "__main__":
    main()

"""Make an RCWA reference file for ``scripts/calibrate_analytic.py --holdout`` (or
``--reference``): generated designs solved by this project's ``rcwa`` model, with the analytic
model's spectra beside them, in the layout of ``../shared/reference/rcwa-reference-*.npz``.

    python scripts/rcwa_reference.py --thickness-nm 150 --count 30 --seed 12 --output ref150.npz

Orders default to [5,5], as the shared reference; ``--workers N`` solves on a LocalCluster of
N processes, and ``--cache`` keeps solved designs so an interrupted run resumes. Absolute
transmission into glass, as the models return it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from layout.design import GEOMETRY_COLUMNS
from layout.generator import generate
from simulators.passband import DEFAULT_BAND_CENTERS_NM
from simulators.spectral import AnalyticModel
from simulators.spectral.rcwa import RcwaConfig, RcwaModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thickness-nm", type=float, required=True)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--material", default="a-Si")
    parser.add_argument("--orders", default="5,5")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.output.exists():
        print(f"error: --output {args.output} exists", file=sys.stderr)
        return 2
    nx, ny = (int(v) for v in args.orders.split(","))
    library = generate(args.count, seed=args.seed)
    wavelength_nm = np.asarray(DEFAULT_BAND_CENTERS_NM, dtype=np.float64)
    rcwa = RcwaModel(
        RcwaConfig(orders=(nx, ny), cache_path=args.cache, progress=True, workers=args.workers)
    )
    options = {"thickness_nm": args.thickness_nm, "material": args.material}
    solved = rcwa.spectra(library, wavelength_nm, **options)
    analytic = AnalyticModel().spectra(library, wavelength_nm, **options)
    columns: dict[str, Any] = {
        c: getattr(library, c) for c in ("design_id", "period_nm", "kind", *GEOMETRY_COLUMNS)
    }
    columns[f"rcwa_n{nx}"] = solved
    columns["analytic"] = analytic
    tmp = args.output.with_name(f".{args.output.name}.part.npz")
    np.savez_compressed(
        tmp,
        **columns,
        wavelength_nm=wavelength_nm,
        thickness_nm=np.float64(args.thickness_nm),
        material=np.str_(args.material),
    )
    tmp.replace(args.output)
    print(f"wrote {len(library)} designs at {args.thickness_nm:g} nm to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate the analytic spectral model against RCWA reference files, and report the figures.

Each reference file is an npz with a design library's own arrays (``design_id``, ``period_nm``,
``kind``, ``center_x_nm``, ``center_y_nm``, ``width_nm``, ``height_nm``, ``inner_width_nm``,
``inner_height_nm``), ``wavelength_nm``, ``thickness_nm``, ``material``, the RCWA spectra
(``rcwa_n5``, or the column named by ``--truth``) and, optionally, ``analytic``: the spectra
of the model as it was when the file was made (the "before" figures).

The split is fixed before fitting and does not depend on file order: a design is **held out**
when ``abs(design_id) % 10 < 3`` (design ids are content hashes, so this is a pseudo-random
30 %), otherwise it is in the **fit** split. Only fit-split designs of the ``--reference``
files enter the least-squares fit; ``--holdout`` files are only evaluated (all their designs).

    python scripts/calibrate_analytic.py                    # fit, print before/after tables
    python scripts/calibrate_analytic.py --no-fit           # evaluate the current defaults
    python scripts/calibrate_analytic.py --no-fit --holdout more-150nm.npz more-195nm.npz
    python scripts/calibrate_analytic.py --export-heldout tests/data/rcwa_heldout_a-Si_178nm.npz

The fit starts from the current ``AnalyticConfig`` defaults, minimises the squared error in T
over all fit-split values (scipy ``least_squares``, trust-region reflective, within the bounds
below) and prints the constants to paste into ``AnalyticConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from layout.design import DesignLibrary, Kind
from simulators.spectral.analytic import AnalyticConfig, AnalyticModel, Mode

FloatArray = NDArray[np.float64]
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / "rcwa-reference-a-Si-178nm.npz"
LIBRARY_COLUMNS = (
    "period_nm", "kind", "center_x_nm", "center_y_nm", "width_nm", "height_nm",
    "inner_width_nm", "inner_height_nm",
)  # fmt: skip

# Fitted constants and their bounds; "mode<i>.<field>" addresses AnalyticConfig.modes[i].
BOUNDS: dict[str, tuple[float, float]] = {
    "extinction": (-5.0, 20.0),
    "absorption_extinction": (-10.0, 20.0),
    "anisotropy": (0.0, 1.0),
    "rect_shape": (0.5, 2.0),
    "ring_power": (0.0, 4.0),
    "loss_damping": (0.0, 5.0),
    "mode0.shift": (0.6, 1.5),
    "mode0.q": (0.5, 50.0),
    "mode0.depth": (0.0, 30.0),
    "mode1.shift": (0.6, 1.5),
    "mode1.q": (0.5, 50.0),
    "mode1.depth": (0.0, 30.0),
    "diffraction_parallel": (0.0, 100.0),
    "diffraction_perpendicular": (0.0, 100.0),
    "obliquity_power": (0.0, 4.0),
    "air_diffraction": (-20.0, 20.0),
    "air_diffraction_area": (-20.0, 50.0),
    "guided_te": (-50.0, 50.0),
    "guided_tm": (-50.0, 50.0),
    "guided_width": (0.005, 0.5),
    "guided_slab_mix": (0.0, 1.0),
}


def held_out(design_id: NDArray[np.int64]) -> NDArray[np.bool_]:
    """The fixed split rule: True for held-out designs."""
    mask: NDArray[np.bool_] = np.abs(design_id) % 10 < 3
    return mask


@dataclass(frozen=True)
class Reference:
    """One reference file (or a subset of its designs)."""

    path: str
    library: DesignLibrary
    wavelength_nm: FloatArray
    thickness_nm: float
    material: str
    truth: FloatArray  # (N, 2, W)
    before: FloatArray | None  # (N, 2, W) the old analytic spectra, when the file has them

    @staticmethod
    def load(path: Path, truth: str) -> Reference:
        with np.load(path, allow_pickle=False) as d:
            library = DesignLibrary.from_arrays(*(d[c] for c in LIBRARY_COLUMNS))
            if not np.array_equal(library.design_id, d["design_id"]):
                raise ValueError(f"{path}: design_id does not match the stored geometry")
            return Reference(
                str(path),
                library,
                np.asarray(d["wavelength_nm"], dtype=np.float64),
                float(d["thickness_nm"]),
                str(d["material"]),
                np.asarray(d[truth], dtype=np.float64),
                np.asarray(d["analytic"], dtype=np.float64) if "analytic" in d else None,
            )

    def take(self, mask: NDArray[np.bool_]) -> Reference:
        index = np.flatnonzero(mask)
        return dataclasses.replace(
            self,
            library=self.library.take(index),
            truth=self.truth[index],
            before=None if self.before is None else self.before[index],
        )

    def spectra(self, config: AnalyticConfig) -> FloatArray:
        return AnalyticModel(config).spectra(
            self.library, self.wavelength_nm, thickness_nm=self.thickness_nm,
            material=self.material,
        )  # fmt: skip


def get_value(config: AnalyticConfig, name: str) -> float:
    if name.startswith("mode"):
        index, field = name[4:].split(".")
        return float(getattr(config.modes[int(index)], field))
    return float(getattr(config, name))


def with_values(config: AnalyticConfig, names: list[str], values: FloatArray) -> AnalyticConfig:
    fields: dict[str, Any] = {}
    modes = [dataclasses.asdict(m) for m in config.modes]
    for name, value in zip(names, values, strict=True):
        if name.startswith("mode"):
            index, field = name[4:].split(".")
            modes[int(index)][field] = float(value)
        else:
            fields[name] = float(value)
    return dataclasses.replace(config, modes=tuple(Mode(**m) for m in modes), **fields)


def dominant_kind(library: DesignLibrary) -> NDArray[np.int64]:
    """Kind of each design's largest primitive (by bounding-box area)."""
    box = np.where(library.present, library.width_nm * library.height_nm, -1.0)
    out: NDArray[np.int64] = np.take_along_axis(
        library.kind.astype(np.int64), np.argmax(box, axis=1)[:, None], axis=1
    )[:, 0]
    return out


def metrics(pred: FloatArray, truth: FloatArray) -> dict[str, float]:
    a, b = pred.ravel(), truth.ravel()
    r = float(np.corrcoef(a, b)[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else np.nan
    return {
        "n": int(pred.shape[0]),
        "rmse": round(float(np.sqrt(np.mean((a - b) ** 2))), 4),
        "pearson_r": round(r, 4),
        "bias": round(float(np.mean(a - b)), 4),
    }


def breakdown(pred: FloatArray, truth: FloatArray, library: DesignLibrary) -> dict[str, Any]:
    """Overall, per polarization, per period, per dominant kind, ring vs no ring."""
    out: dict[str, Any] = {"overall": metrics(pred, truth)}
    for p, name in enumerate(("x", "y")):
        out[f"pol_{name}"] = metrics(pred[:, p], truth[:, p])
    for period in np.unique(library.period_nm):
        sel = library.period_nm == period
        out[f"P{period:g}"] = metrics(pred[sel], truth[sel])
    kinds = dominant_kind(library)
    for kind in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING):
        sel = kinds == kind
        if sel.any():
            out[f"dominant_{kind.name.lower()}"] = metrics(pred[sel], truth[sel])
    ring = (library.kind == Kind.RING).any(axis=1)
    for name, sel in (("has_ring", ring), ("no_ring", ~ring)):
        if sel.any():
            out[name] = metrics(pred[sel], truth[sel])
    return out


def table(title: str, before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    lines = [title, f"{'group':<20}{'n':>5}  {'before rmse / r':>17}  {'after rmse / r':>17}"]
    for key, a in after.items():
        b = before[key] if before else None
        old = f"{b['rmse']:.3f} / {b['pearson_r']:.3f}" if b else "-"
        lines.append(f"{key:<20}{a['n']:>5}  {old:>17}  {a['rmse']:.3f} / {a['pearson_r']:.3f}")
    return "\n".join(lines)


def evaluate(
    name: str, refs: list[Reference], config: AnalyticConfig
) -> tuple[dict[str, Any], str]:
    """Before/after breakdown over several references (same bands)."""
    after = np.concatenate([r.spectra(config) for r in refs])
    truth = np.concatenate([r.truth for r in refs])
    library = DesignLibrary.concatenate([r.library for r in refs])
    report: dict[str, Any] = {"after": breakdown(after, truth, library)}
    before = None
    if all(r.before is not None for r in refs):
        old = np.concatenate([r.before for r in refs if r.before is not None])
        before = breakdown(old, truth, library)
        report["before"] = before
    return report, table(name, before, report["after"])


def fit(refs: list[Reference], start: AnalyticConfig, max_nfev: int) -> AnalyticConfig:
    names = list(BOUNDS)
    x0 = np.array([get_value(start, n) for n in names])
    lo = np.array([BOUNDS[n][0] for n in names])
    hi = np.array([BOUNDS[n][1] for n in names])
    x0 = np.clip(x0, lo, hi)
    serial = dataclasses.replace(start, workers=1)

    def residual(x: FloatArray) -> FloatArray:
        cfg = with_values(serial, names, x)
        return np.concatenate([(r.spectra(cfg) - r.truth).ravel() for r in refs])

    result = least_squares(
        residual, x0, bounds=(lo, hi), x_scale="jac", max_nfev=max_nfev, verbose=1
    )
    return with_values(start, names, result.x)


def config_source(config: AnalyticConfig) -> str:
    """The fitted constants as AnalyticConfig field lines, to paste into the defaults."""
    lines = [f"    {n} = {get_value(config, n):.4g}" for n in BOUNDS if not n.startswith("mode")]
    modes = ", ".join(
        f"Mode(shift={m.shift:.4g}, q={m.q:.4g}, depth={m.depth:.4g})" for m in config.modes
    )
    return "\n".join([*lines, f"    DEFAULT_MODES = ({modes},)"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference", nargs="+", type=Path, default=[DEFAULT_REFERENCE],
        help="reference npz files: fit on their fit split, report their held-out split",
    )  # fmt: skip
    parser.add_argument(
        "--holdout", nargs="*", type=Path, default=[],
        help="extra npz files that are only evaluated (every design in them)",
    )  # fmt: skip
    parser.add_argument("--truth", default="rcwa_n5", help="column with the RCWA spectra")
    parser.add_argument("--no-fit", action="store_true", help="evaluate the current defaults")
    parser.add_argument("--max-nfev", type=int, default=400)
    parser.add_argument("--json", type=Path, help="write the whole report here")
    parser.add_argument(
        "--export-heldout", type=Path,
        help="write the held-out designs of the first --reference file (all columns) here",
    )  # fmt: skip
    args = parser.parse_args(argv)

    references = [Reference.load(p, args.truth) for p in args.reference]
    if args.export_heldout:
        first = args.reference[0]
        with np.load(first, allow_pickle=False) as d:
            keep = held_out(d["design_id"])
            per_design = [
                k for k in d.files if k != "wavelength_nm" and d[k].ndim and len(d[k]) == keep.size
            ]
            columns = {k: d[k][keep] if k in per_design else d[k] for k in d.files}
        columns.pop("done", None)
        np.savez_compressed(args.export_heldout, **columns, source=np.str_(first.name))
        print(f"wrote {int(keep.sum())} held-out designs of {first} to {args.export_heldout}")
        return 0

    fit_refs = [r.take(~held_out(r.library.design_id)) for r in references]
    held_refs = [r.take(held_out(r.library.design_id)) for r in references]
    extra = [Reference.load(p, args.truth) for p in args.holdout]
    config = AnalyticConfig()
    report: dict[str, Any] = {
        "split": "held out: abs(design_id) % 10 < 3",
        "references": [str(p) for p in args.reference],
        "holdout_files": [str(p) for p in args.holdout],
        "fit_designs": int(sum(len(r.library) for r in fit_refs)),
        "held_out_designs": int(sum(len(r.library) for r in held_refs)),
    }
    if not args.no_fit:
        t = time.perf_counter()
        config = fit(fit_refs, config, args.max_nfev)
        report["fit_s"] = round(time.perf_counter() - t, 1)
        report["fitted"] = {n: get_value(config, n) for n in BOUNDS}
        print("fitted constants:\n" + config_source(config))
    for name, refs in (("fit split", fit_refs), ("held-out split", held_refs)):
        report[name], text = evaluate(name, refs, config)
        print(text)
    for ref in extra:
        report[ref.path], text = evaluate(f"holdout file {ref.path}", [ref], config)
        print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The curation report: a Markdown page and three PNGs a person reads before trusting a pairs file.

The histogram shows where the threshold falls against the replica-MSE distribution (noise floor
on the left, defects on the right; a threshold inside the main mode would reject good designs);
the bar charts say what was lost and why; the example spectra show replicas overlaid, so a
reader sees what an accepted and a rejected disagreement look like. Figures use matplotlib's
``Figure`` directly (no pyplot state, no display needed) and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from common.atomic import atomic_output, save_png
from dataset.curation import PAIR_POLARIZATIONS, CurationResult, Decision
from dataset.quality import PadFlag, describe

REPORT_FILE = "report.md"
HISTOGRAM_FILE = "replica_mse.png"
REASONS_FILE = "reject_reasons.png"
EXAMPLES_FILE = "examples.png"
REPORT_FILES = (REPORT_FILE, HISTOGRAM_FILE, REASONS_FILE, EXAMPLES_FILE)
EXAMPLES_PER_KIND = 3
DPI = 100


def default_report_dir(pairs_path: Path) -> Path:
    """``pairs.h5`` -> ``pairs_report/`` beside it."""
    return pairs_path.with_name(f"{pairs_path.stem}_report")


def write_report(
    result: CurationResult,
    directory: Path,
    *,
    pairs_path: Path | None = None,
    inputs: Sequence[str] = (),
    manifests: Sequence[str] = (),
) -> Path:
    """Write the report into ``directory`` (created if its parent exists); returns the .md path."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        raise FileNotFoundError(f"report directory's parent {directory.parent} does not exist")
    directory.mkdir(exist_ok=True)
    save_png(_histogram(result), directory / HISTOGRAM_FILE, DPI)
    save_png(_reasons(result), directory / REASONS_FILE, DPI)
    examples = example_designs(result)
    if examples:
        save_png(_examples(result, examples), directory / EXAMPLES_FILE, DPI)
    text = _markdown(result, pairs_path, inputs, manifests, bool(examples))
    path = directory / REPORT_FILE
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def example_designs(result: CurationResult, per_kind: int = EXAMPLES_PER_KIND) -> list[int]:
    """Rows to plot: kept designs from the median to the top of their MSE distribution (typical
    to worst accepted), replica-MSE rejections from the borderline to the worst, and one design
    left with a single usable replica (its flagged twin shown dashed)."""
    mse = result.replica_mse
    chosen: list[int] = []
    for decision in (Decision.KEPT, Decision.REPLICA_MSE):
        rows = np.flatnonzero((result.decision == decision) & np.isfinite(mse))
        if decision == Decision.KEPT and rows.size == 0:
            rows = np.flatnonzero(result.decision == decision)  # single replicas kept
        if rows.size == 0:
            continue
        ranked = rows[np.argsort(mse[rows], kind="stable")]
        picks = np.rint(
            np.linspace(0.5 if decision == Decision.KEPT else 0.0, 1.0, per_kind)
            * (ranked.size - 1)
        )
        chosen += [int(ranked[int(i)]) for i in dict.fromkeys(picks.astype(int).tolist())]
    single = np.flatnonzero(result.decision == Decision.SINGLE_REPLICA)
    return [*chosen, int(single[0])] if single.size else chosen


def _histogram(result: CurationResult) -> Figure:
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    mse = result.replica_mse[np.isfinite(result.replica_mse)]
    ax.set_xscale("log")
    ax.set_xlabel("replica MSE (largest pairwise, transmission²)")
    ax.set_ylabel("designs")
    if mse.size:
        positive = mse[mse > 0]
        floor = positive.min() if positive.size else result.threshold * 1e-3
        low = min(floor, result.threshold) / 2
        high = max(float(mse.max()), result.threshold) * 2
        bins = np.geomspace(low, high, 60).tolist()
        ax.hist(np.maximum(mse, low), bins=bins, color="C0")
        above = int(np.count_nonzero(mse > result.threshold))
        ax.set_title(
            f"{mse.size} designs with >= 2 usable replicas; {above} above the threshold",
            fontsize=9,
        )
    else:
        ax.set_xlim(result.threshold / 100, result.threshold * 100)
        ax.set_title("no design had two usable replicas", fontsize=9)
    # After the limits: a line drawn first leaves a stale autoscale that set_xlim runs on one point.
    ax.axvline(result.threshold, color="C3", lw=1.5, label=f"threshold {result.threshold:g}")
    ax.legend(fontsize=8)
    return fig


def _bars(ax: Axes, counts: dict[str, int], title: str, color: str) -> None:
    names = list(counts)
    values = [counts[n] for n in names]
    bars = ax.bar(range(len(names)), values, color=color)
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.15)


def _reasons(result: CurationResult) -> Figure:
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[len(PadFlag) - 1, len(Decision)])
    pads = result.pad_counts()
    _bars(
        left,
        result.flag_counts(),
        f"dataset pads dropped by flag ({pads['dataset_flagged']} of {pads['dataset']})",
        "C1",
    )
    left.set_ylabel("pads")
    _bars(right, result.design_counts(), f"designs by decision ({len(result)})", "C0")
    right.set_ylabel("designs")
    return fig


def _examples(result: CurationResult, rows: list[int]) -> Figure:
    fig = Figure(figsize=(10, 2.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(PAIR_POLARIZATIONS), squeeze=False, sharex=True)
    w = result.wavelength_nm
    for r, design in enumerate(rows):
        pads = np.flatnonzero(result.pad_design == design)
        decision = Decision(int(result.decision[design])).name.lower()
        mse = result.replica_mse[design]
        for q, pol in enumerate(PAIR_POLARIZATIONS):
            ax = axes[r, q]
            for k, pad in enumerate(pads):
                flags = int(result.pad_flags[pad])
                label = _pad_label(result, int(pad))
                if flags:
                    label += f" ({describe(flags, PadFlag)})"
                ax.plot(
                    w,
                    result.pad_transmission[pad, q],
                    color="0.6" if flags else f"C{k % 10}",
                    ls="--" if flags else "-",
                    lw=1,
                    label=label,
                )
            if decision == Decision.KEPT.name.lower():
                ax.plot(w, result.spectrum[design, q], color="k", ls=":", lw=1.5, label="mean")
            ax.set_title(
                f"{decision}: design {int(result.design_id[design])}, {pol} pol., MSE {mse:.2g}",
                fontsize=8,
            )
            ax.set_ylabel("transmission", fontsize=8)
            if q == len(PAIR_POLARIZATIONS) - 1:
                ax.legend(fontsize=6, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("wavelength (nm)", fontsize=8)
    return fig


def _pad_label(result: CurationResult, pad: int) -> str:
    chip = result.chips[int(result.pad_chip[pad])]
    prefix = f"{chip} " if len(result.chips) > 1 else ""
    return f"{prefix}A{int(result.pad_array_id[pad])}R{int(result.pad_replica[pad])}"


def _table(rows: dict[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return lines


def _markdown(
    result: CurationResult,
    pairs_path: Path | None,
    inputs: Sequence[str],
    manifests: Sequence[str],
    examples: bool,
) -> str:
    designs = result.design_counts()
    pads = result.pad_counts()
    mse = result.replica_mse[np.isfinite(result.replica_mse)]
    kept_replicas: NDArray[np.int32] = result.replicas[result.kept]
    per_replicas = {
        f"{int(k)} usable replicas": int(np.count_nonzero(kept_replicas == k))
        for k in np.unique(kept_replicas)
    }
    lines = [
        "# Curation report",
        "",
        f"- pairs file: `{pairs_path}`" if pairs_path else "- pairs file: (not written)",
        f"- chips: {', '.join(result.chips)} ({result.material}); arrays: {len(result.arrays)}",
        f"- spectra files: {len(inputs) or '(given in memory)'}; manifests: "
        + (", ".join(f"`{m}`" for m in manifests) or "(given in memory)"),
        f"- wavelengths: {result.wavelength_nm.size} bands, "
        f"{result.wavelength_nm[0]:g}..{result.wavelength_nm[-1]:g} nm",
        f"- rule: a design is rejected when the largest pairwise replica MSE (mean over x, y and "
        f"wavelengths of squared differences) exceeds **{result.threshold:g}**; flagged pads do "
        f"not vote; single-replica designs are "
        f"{'kept' if result.keep_single else 'rejected as unverified'}",
        "",
        "## Pads",
        "",
        *_table(pads, ("pads", "count")),
        "",
        *_table(result.flag_counts(), ("dataset pads flagged (by flag)", "count")),
        "",
        "## Designs",
        "",
        *_table(designs, ("decision", "designs")),
        "",
        f"Kept: {designs['kept']} of {len(result)} designs "
        f"({100 * designs['kept'] / max(len(result), 1):.1f} %); "
        + (", ".join(f"{v} with {k}" for k, v in per_replicas.items()) or "none")
        + f". Designs of the manifests never scanned: {result.designs_not_scanned}.",
        "",
        "## Replica MSE",
        "",
    ]
    if mse.size:
        q = np.percentile(mse, [50, 90, 99])
        lines.append(
            f"{mse.size} designs with two or more usable replicas: median {q[0]:.3g}, "
            f"90th percentile {q[1]:.3g}, 99th {q[2]:.3g}, max {mse.max():.3g}."
        )
    else:
        lines.append("No design had two usable replicas.")
    lines += ["", f"![replica MSE histogram]({HISTOGRAM_FILE})", ""]
    lines += ["## Rejections", "", f"![reject reasons]({REASONS_FILE})", ""]
    if examples:
        lines += [
            "## Example spectra",
            "",
            "Kept designs from the median to the top of the accepted MSE range, rejected designs "
            "from the borderline to the worst, and a design left with one usable replica; "
            "flagged pads dashed grey, the kept mean dotted.",
            "",
            f"![example spectra]({EXAMPLES_FILE})",
            "",
        ]
    return "\n".join(lines)

"""Pictures of an inverse-designed chip's comparison: the three images, the ΔE2000
histograms, and a few targets' spectra (target / promised / measured)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from common.atomic import save_png
from dataset.chip_design_file import ChipDesign
from dataset.chip_report import PadComparison, images
from dataset.colorimetry import lab_to_srgb

MAX_SPECTRA = 6


def plot_images(c: PadComparison, design: ChipDesign, path: Path) -> None:
    """Target | promised | measured, one row per replica; each panel titled by its median
    ΔE2000 against the target."""
    planes = images(c, design)
    fig = Figure(figsize=(9, 3.2 * len(planes)))
    for k, (rep, trio) in enumerate(sorted(planes.items())):
        sel = (c.replica == rep) & c.usable
        titles = (
            "target",
            f"promised (ΔE {np.median(c.delta_e_promised[sel]):.1f})",
            f"measured (ΔE {np.median(c.delta_e_measured[sel]):.1f})",
        )
        for j, (img, title) in enumerate(zip(trio, titles, strict=True)):
            ax = fig.add_subplot(len(planes), 3, 3 * k + j + 1)
            ax.imshow(img, origin="lower", interpolation="nearest")
            ax.set_title(f"replica {rep}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    save_png(fig, path)


def plot_histogram(c: PadComparison, path: Path) -> None:
    u = c.usable
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    series = (
        ("measured vs target", c.delta_e_measured[u]),
        ("promised vs target", c.delta_e_promised[u]),
        ("measured vs promised", c.delta_e_model[u]),
    )
    top = max(float(np.quantile(v, 0.99)) for _, v in series if v.size) if u.any() else 1.0
    bins = np.linspace(0, max(top, 1.0), 40).tolist()
    for label, values in series:
        ax.hist(
            values,
            bins=bins,
            histtype="step",
            lw=1.5,
            label=f"{label}: median {np.median(values):.2f}, q95 {np.quantile(values, 0.95):.2f}",
        )
    ax.set_xlabel("CIEDE2000 per pad")
    ax.set_ylabel("pads")
    ax.legend(fontsize=7)
    ax.set_title(f"{int(u.sum())} usable pads")
    fig.tight_layout()
    save_png(fig, path)


def plot_spectra(c: PadComparison, design: ChipDesign, path: Path) -> None:
    """Six targets spread over the measured error, best to worst (so the worst is always
    shown): target spectrum (spectral maps), the promised spectrum and the measured pads'
    median with their 5-95 % band; x solid, y dashed. A swatch row shows the target, promised
    and measured colours; the title gives the target's median measured error."""
    error = c.mse_measured if c.mse_measured is not None else c.delta_e_measured
    present = np.unique(c.target[c.usable])
    median = np.array([np.median(error[c.usable & (c.target == t)]) for t in present])
    ordered = present[np.argsort(median, kind="stable")]
    picks = np.unique(np.linspace(0, ordered.size - 1, min(MAX_SPECTRA, ordered.size)).round())
    chosen = ordered[picks.astype(int)]
    label = "MSE" if c.mse_measured is not None else "ΔE"
    lam = design.wavelength_nm
    fig = Figure(figsize=(3.3 * max(len(chosen), 1), 4.2))
    for k, t in enumerate(chosen):
        ax = fig.add_subplot(1, max(len(chosen), 1), k + 1)
        sel = c.usable & (c.target == t)
        d = int(design.designed_row[t])
        measured = c.measured_spectra[sel]
        for pol, style in ((0, "-"), (1, "--")):
            if design.target_spectra is not None:
                ax.plot(
                    lam,
                    design.target_spectra[t, pol],
                    style,
                    color="k",
                    lw=1.2,
                    label="target" if pol == 0 else None,
                )
            ax.plot(
                lam,
                design.promised_spectra[d, pol],
                style,
                color="tab:blue",
                lw=1.2,
                label="promised" if pol == 0 else None,
            )
            med = np.median(measured[:, pol], axis=0)
            lo, hi = np.quantile(measured[:, pol], [0.05, 0.95], axis=0)
            ax.plot(
                lam,
                med,
                style,
                color="tab:red",
                lw=1.2,
                label=f"measured ({sel.sum()} pads)" if pol == 0 else None,
            )
            ax.fill_between(lam, lo, hi, color="tab:red", alpha=0.15, lw=0)
        swatch = _swatch(design, c, t, d, sel)
        ax.imshow(swatch, extent=(lam[0], lam[-1], 1.05, 1.25), aspect="auto")
        third = (lam[-1] - lam[0]) / 3
        for j, name in enumerate(("target", "promised", "measured")):
            ax.text(lam[0] + third * (j + 0.5), 1.15, name, ha="center", va="center", fontsize=6)
        ax.set_ylim(0, 1.3)
        ax.set_xlim(lam[0], lam[-1])
        ax.set_title(f"{design.target_id[t][:24]}: {label} {np.median(error[sel]):.3g}", fontsize=8)
        ax.set_xlabel("wavelength (nm)", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    save_png(fig, path)


def _swatch(
    design: ChipDesign, c: PadComparison, t: int, d: int, sel: NDArray[np.bool_]
) -> NDArray[np.float64]:
    labs = [design.target_lab[t], design.promised_lab[d], np.median(c.measured_lab[sel], axis=0)]
    return lab_to_srgb(np.asarray(labs))[None]

"""Pictures of inverse design: each target beside the geometries chosen for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from common.atomic import save_png
from dataset.chosen_designs_file import ChosenDesigns
from dataset.targets_file import Targets
from layout.raster import rasterize

MAX_ROWS = 8


def plot_targets_and_designs(targets: Targets, chosen: ChosenDesigns, path: Path) -> None:
    """Up to eight targets: the target spectra (x solid, y dashed; zero-weight bands grey) and
    the unit cells of their best three designs with period, thickness and similarity."""
    largest = int(chosen.database_size.max()) if len(chosen) else 0
    pick = chosen.database_size == largest
    ids = list(dict.fromkeys(np.asarray(chosen.target_id)[pick].tolist()))[:MAX_ROWS]
    index = {t: i for i, t in enumerate(targets.target_id)}
    k = min(3, int(chosen.rank.max()) if len(chosen) else 1)
    fig = Figure(figsize=(3.2 + 1.6 * k, 1.7 * max(len(ids), 1)))
    lam = targets.wavelength_nm
    for r, tid in enumerate(ids):
        t = index[tid]
        ax = fig.add_subplot(len(ids), 1 + k, r * (1 + k) + 1)
        for pol, style in ((0, "-"), (1, "--")):
            w = targets.weight[t, pol] > 0
            ax.plot(lam, targets.spectra[t, pol], style, color="0.7", lw=1)
            ax.plot(
                np.where(w, lam, np.nan), targets.spectra[t, pol], style, lw=1.5, label="xy"[pol]
            )
        ax.set_ylim(0, 1.1)
        ax.set_title(tid[:32], fontsize=7)
        ax.tick_params(labelsize=6)
        rows = np.flatnonzero(pick & (np.asarray(chosen.target_id) == tid))
        rows = rows[np.argsort(chosen.rank[rows])][:k]
        images = rasterize(chosen.library.take(chosen.design_row[rows]))
        for j, row in enumerate(rows):
            ax2 = fig.add_subplot(len(ids), 1 + k, r * (1 + k) + 2 + j)
            ax2.imshow(images[j], origin="lower", cmap="gray_r", interpolation="nearest")
            d = chosen.design_row[row]
            ax2.set_title(
                f"#{chosen.rank[row]} P{chosen.library.period_nm[d]:.0f} "
                f"t{chosen.thickness_nm[row]:.0f} s{chosen.similarity[row]:.2f}",
                fontsize=6,
            )
            ax2.set_xticks([])
            ax2.set_yticks([])
    fig.tight_layout()
    save_png(fig, path)


def plot_gamut(
    pool_lab: NDArray[np.float64],
    target_lab: NDArray[np.float64],
    promised_lab: NDArray[np.float64],
    path: Path,
) -> None:
    """The colours the candidate designs are predicted to show (dots in their own colour) on
    the a*b* plane and against lightness, with each target (ring) joined to its design's
    promised colour (cross): how far a print's colours are from what the designs can reach."""
    from dataset.colorimetry import lab_to_srgb

    fig = Figure(figsize=(10, 4.6))
    pool_rgb = lab_to_srgb(pool_lab)
    for k, (x, y, xl, yl) in enumerate(((1, 2, "a*", "b*"), (3, 0, "chroma C*", "L*"))):
        ax = fig.add_subplot(1, 2, k + 1)

        def coord(lab: NDArray[np.float64], i: int) -> NDArray[np.float64]:
            return np.hypot(lab[:, 1], lab[:, 2]) if i == 3 else lab[:, i]

        ax.scatter(coord(pool_lab, x), coord(pool_lab, y), s=3, c=pool_rgb, lw=0)
        for t, p in zip(target_lab, promised_lab, strict=True):
            ax.plot(
                [coord(t[None], x)[0], coord(p[None], x)[0]],
                [coord(t[None], y)[0], coord(p[None], y)[0]],
                color="k",
                lw=0.6,
            )
        ax.scatter(
            coord(target_lab, x),
            coord(target_lab, y),
            s=60,
            facecolors=lab_to_srgb(target_lab),
            edgecolors="k",
            label="target",
        )
        ax.scatter(
            coord(promised_lab, x),
            coord(promised_lab, y),
            s=30,
            c="k",
            marker="x",
            label="promised",
        )
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"reachable colours: {pool_lab.shape[0]} candidate designs (predicted)")
    fig.tight_layout()
    save_png(fig, path)

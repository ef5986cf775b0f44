"""PNG previews a person checks before sending a chip to fabrication: a few designs with their
raster beside the written polygons (they must agree), and a mosaic of one array's pads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch

from common.atomic import save_png
from layout.design import DesignLibrary
from layout.manifest import ChipManifest, Role
from layout.polygons import NM_PER_UM, design_polygons
from layout.raster import rasterize


def preview_designs(library: DesignLibrary, path: Path, count: int = 6) -> None:
    """Top row: 128x128 rasters; bottom row: the GDS polygons of the same designs, in nm."""
    n = min(count, len(library))
    if n < 1:
        raise ValueError(f"count={count} must be >= 1 and the library non-empty")
    sub = library.take(np.arange(n))
    images = rasterize(sub)
    fig = Figure(figsize=(2.4 * n, 5))
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        period = float(sub.period_nm[i])
        ax = axes[0, i]
        ax.imshow(
            images[i],
            origin="lower",
            extent=(0, period, 0, period),
            cmap="gray_r",
            interpolation="nearest",
        )
        ax.set_title(f"id {int(sub.design_id[i]) % 100000:05d}…\nP = {period:g} nm", fontsize=8)
        ax = axes[1, i]
        for poly in design_polygons(sub.design(i)):
            ax.add_patch(
                PolygonPatch(
                    np.asarray(poly.points) * NM_PER_UM,
                    closed=True,
                    facecolor="0.2",
                    edgecolor="C3",
                    lw=0.6,
                )
            )
        ax.set_xlim(0, period)
        ax.set_ylim(0, period)
        ax.set_aspect("equal")
        ax.set_title("GDS polygons", fontsize=8)
        for a in axes[:, i]:
            a.tick_params(labelsize=6)
    fig.suptitle("Unit cells: raster (top) vs written polygons (bottom)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=130)


def preview_array(
    manifest: ChipManifest, path: Path, array_name: str | None = None, max_pads: int = 24
) -> None:
    """Mosaic of an array's pads (each its unit cell raster) up to ``max_pads`` a side."""
    name = array_name or manifest.arrays.name[0]
    a = manifest.array_index(name)
    pads = manifest.pads
    sel = manifest.pads_of(a)
    sel = sel[(pads.row[sel] < max_pads) & (pads.col[sel] < max_pads)]
    rows = int(min(manifest.arrays.rows[a], max_pads))
    cols = int(min(manifest.arrays.cols[a], max_pads))
    px = 32
    used, index = np.unique(manifest.designs.index_of(pads.design_id[sel]), return_inverse=True)
    tile = rasterize(manifest.designs.take(used), size=64)[:, ::2, ::2]
    mosaic = np.zeros((rows * px, cols * px))
    for r, c, i in zip(pads.row[sel], pads.col[sel], index, strict=True):
        mosaic[r * px : (r + 1) * px, c * px : (c + 1) * px] = tile[i]
    fig = Figure(figsize=(8, 8 * rows / cols))
    ax = fig.subplots()
    size = manifest.pad_pitch_um
    ax.imshow(
        mosaic,
        origin="lower",
        cmap="gray_r",
        extent=(0, cols * size, 0, rows * size),
        interpolation="nearest",
    )
    for k in range(1, max(rows, cols)):
        ax.axhline(k * size, color="C0", lw=0.3)
        ax.axvline(k * size, color="C0", lw=0.3)
    shown = (
        f" (first {rows}x{cols} pads)"
        if (rows, cols) != (manifest.arrays.rows[a], manifest.arrays.cols[a])
        else ""
    )
    role = Role(int(manifest.arrays.role[a])).name.lower()
    ax.set_title(f"{manifest.chip_id} / {name} ({role}){shown}: one unit cell per pad", fontsize=9)
    ax.set_xlabel("x from array origin (µm)")
    ax.set_ylabel("y from array origin (µm)")
    fig.tight_layout()
    save_png(fig, path, dpi=130)

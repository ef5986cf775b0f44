"""A quick-look PNG per scanned array: false-colour RGB of every band and one band in grey.

Processing, so it lives here; the scan runner calls it as a subscriber to "array done" that the
``metascan scan`` command wires in (acquisition imports dataset's formats only).

Made from the hypercubes as they are on disk the moment the array's last tile closes, so a
person sees within seconds whether focus, exposure and registration look right, long before
processing. Tiles are placed on a grid by their tile index (the small overlap between tiles is
shown twice: a quick-look, not a stitch). Transmission here is the same flat-fielded,
lamp-compensated ratio processing computes (:func:`dataset.extraction.transmission_images`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from common.atomic import save_png
from dataset.extraction import transmission_images
from dataset.false_colour import false_colour
from dataset.process import find_tiles

log = logging.getLogger(__name__)
GREY_BAND_NM = 550.0


def _tile_images(path: Path, polarization: str) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """(B, H, W) transmission of one tile at ``polarization``, and its bands."""
    cube = transmission_images(path)
    return cube.images[cube.polarization.index(polarization)], cube.wavelength_nm


def write_quicklook(folder: Path, array: str, output: Path, polarization: str = "x") -> Path:
    """Write the quick-look of ``array`` from the tile files in ``folder`` to ``output``."""
    files = find_tiles(folder, skip_unreadable=True).arrays.get(array)
    if not files:
        raise FileNotFoundError(f"no tile of array {array} in {folder}")
    tiles = [(*_tile_images(f.path, polarization), *f.tile) for f in files]
    wavelengths = tiles[0][1]
    _, h, w = tiles[0][0].shape
    rows = 1 + max(t[2] for t in tiles)
    cols = 1 + max(t[3] for t in tiles)
    cube = np.full((wavelengths.size, rows * h, cols * w), np.nan, dtype=np.float32)
    for stack, _, r, c in tiles:
        top = (rows - 1 - r) * h  # tile row grows with chip y, image rows grow downwards
        cube[:, top : top + h, c * w : (c + 1) * w] = stack
    rgb = false_colour(cube, wavelengths)
    grey_b = int(np.argmin(np.abs(wavelengths - GREY_BAND_NM)))
    done = int(np.count_nonzero(np.isfinite(cube).any(axis=(1, 2))))
    fig = Figure(figsize=(11, 5.2))
    axes = fig.subplots(1, 2)
    axes[0].imshow(rgb, interpolation="nearest")
    axes[0].set_title(f"{array}: false colour, {polarization} polarisation (white = glass)")
    im = axes[1].imshow(cube[grey_b], cmap="gray", vmin=0.0, vmax=1.2)
    axes[1].set_title(f"{wavelengths[grey_b]:g} nm, transmission")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"quick-look {array} ({len(tiles)} tile(s), {done}/{wavelengths.size} bands)", fontsize=10
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, output)
    return output

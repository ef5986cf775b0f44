"""Draw the demo's logo: a 40x40 RGBA PNG of a few flat colours (a lens, a wave, a dot) for
`metascan design chip` to print as structural colour. Deterministic: same bytes every run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# Muted colours of the kind a-Si metasurfaces can show under a halogen lamp.
BACKGROUND = (214, 206, 190)
LENS = (150, 110, 120)
WAVE = (90, 120, 140)
DOT = (185, 160, 125)


def draw(size: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] + 0.5
    rgba = np.empty((size, size, 4), np.uint8)
    rgba[...] = (*BACKGROUND, 255)
    c = size / 2
    lens = (x - c) ** 2 / (0.42 * size) ** 2 + (y - c) ** 2 / (0.26 * size) ** 2 <= 1
    rgba[lens] = (*LENS, 255)
    wave = np.abs(y - (c + 0.12 * size * np.sin(2 * np.pi * x / size))) <= 0.06 * size
    rgba[wave] = (*WAVE, 255)
    dot = (x - c) ** 2 + (y - c) ** 2 <= (0.12 * size) ** 2
    rgba[dot] = (*DOT, 255)
    return rgba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", type=int, default=40)
    args = parser.parse_args()
    Image.fromarray(draw(args.size), "RGBA").save(args.output)


if __name__ == "__main__":
    main()

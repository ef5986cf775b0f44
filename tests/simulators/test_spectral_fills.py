"""Row and column fill counts equal the raster's own sums, exactly."""

from __future__ import annotations

import numpy as np
from spectral_designs import c4_designs, full_film, no_silicon

from layout.design import DesignLibrary
from layout.fabrication import apply_size_bias
from layout.generator import generate
from layout.raster import rasterize
from simulators.spectral.fills import line_fills


def check(lib: DesignLibrary, size: int = 128) -> None:
    img = rasterize(lib, size)
    columns, rows = line_fills(lib, size)
    np.testing.assert_array_equal(columns, img.sum(axis=1))
    np.testing.assert_array_equal(rows, img.sum(axis=2))


def test_generated_designs_match_the_raster() -> None:
    lib = generate(500, seed=21)
    check(lib)
    check(lib, size=64)


def test_biased_rings_and_special_cases_match_the_raster() -> None:
    lib = generate(200, seed=4)
    for bias in (-30.0, 12.5, 40.0):  # rings whose hole closes or whose wall vanishes included
        check(apply_size_bias(lib, np.full(len(lib), bias)))
    for special in (c4_designs(), full_film(), no_silicon()):
        check(special)

"""Designs with known symmetries, shared by the spectral-model tests (not a test module)."""

from __future__ import annotations

import numpy as np

from layout.design import Design, DesignLibrary, Kind, Primitive
from layout.raster import rasterize

R = Primitive.rectangle
E = Primitive.ellipse
RING = Primitive.ring


def shifted(lib: DesignLibrary, pixels_x: int, pixels_y: int) -> DesignLibrary:
    """Every design moved by whole raster pixels, so its raster is an exact np.roll."""
    pixel = lib.period_nm[:, None] / 128
    present = lib.present
    return DesignLibrary(
        lib.design_id, lib.period_nm, lib.kind,
        np.where(present, lib.center_x_nm + pixels_x * pixel, 0.0),
        np.where(present, lib.center_y_nm + pixels_y * pixel, 0.0),
        lib.width_nm, lib.height_nm, lib.inner_width_nm, lib.inner_height_nm,
    )  # fmt: skip


def room(lib: DesignLibrary) -> tuple[np.ndarray, np.ndarray]:
    """Per design, the free border (nm) along x and y: how far it can move without leaving."""
    present = lib.present
    lo_x = np.where(present, lib.center_x_nm - lib.width_nm / 2, np.inf).min(1)
    hi_x = np.where(present, lib.center_x_nm + lib.width_nm / 2, -np.inf).max(1)
    lo_y = np.where(present, lib.center_y_nm - lib.height_nm / 2, np.inf).min(1)
    hi_y = np.where(present, lib.center_y_nm + lib.height_nm / 2, -np.inf).max(1)
    return np.minimum(lo_x, lib.period_nm - hi_x), np.minimum(lo_y, lib.period_nm - hi_y)


def transposed(lib: DesignLibrary) -> DesignLibrary:
    """x <-> y for every design (a mirror in the diagonal)."""
    return DesignLibrary.from_arrays(
        lib.period_nm, lib.kind, lib.center_y_nm, lib.center_x_nm, lib.height_nm, lib.width_nm,
        lib.inner_height_nm, lib.inner_width_nm,
    )  # fmt: skip


def pinwheel(period: float = 400.0) -> Design:
    """Four 120x50 nm bars in a chiral pinwheel: 90-degree rotation symmetry, no mirror."""
    c = period / 2
    return Design(
        period,
        (R(c + 35, c + 75, 120, 50), R(c - 75, c + 35, 50, 120),
         R(c - 35, c - 75, 120, 50), R(c + 75, c - 35, 50, 120)),
    )  # fmt: skip


def c4_designs() -> DesignLibrary:
    return DesignLibrary.from_designs(
        [
            pinwheel(400.0),
            pinwheel(500.0),
            Design(300.0, (E(150, 150, 160, 160),)),
            Design(600.0, (RING(300, 300, 400, 400, 200, 200),)),
        ]
    )


def full_film(period: float = 400.0) -> DesignLibrary:
    """One rectangle filling the cell: the raster is all silicon, an unpatterned film."""
    return DesignLibrary.from_designs(
        [Design(period, (R(period / 2, period / 2, period, period),))]
    )


def no_silicon(period: float = 400.0) -> DesignLibrary:
    """A design with no primitive (the checker forbids it; the models must not mind)."""
    return DesignLibrary.from_arrays(
        np.array([period]), np.full((1, 1), Kind.EMPTY), *np.zeros((4, 1, 1))
    )


def assert_rasters_roll(a: DesignLibrary, b: DesignLibrary, px: int, py: int) -> None:
    np.testing.assert_array_equal(rasterize(b), np.roll(rasterize(a), (py, px), axis=(1, 2)))

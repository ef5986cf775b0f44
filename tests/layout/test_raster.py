"""The rasterizer against independent pixel-centre tests: analytic shapes and GDS polygons."""

from __future__ import annotations

import gdstk
import numpy as np
import pytest

from layout.design import GEOMETRY_COLUMNS, Design, DesignLibrary, Kind, Primitive
from layout.generator import generate
from layout.polygons import design_polygons
from layout.raster import rasterize

R = Primitive.rectangle
E = Primitive.ellipse
RING = Primitive.ring

SIZE = 128
COLUMNS = GEOMETRY_COLUMNS


@pytest.fixture(scope="module")
def lib() -> DesignLibrary:
    return generate(50, seed=11)


@pytest.fixture(scope="module")
def images(lib: DesignLibrary) -> np.ndarray:
    return rasterize(lib)


def centres_nm(period: float, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel centre as (size, size) arrays indexed [row, col] = [y, x]."""
    c = (np.arange(size) + 0.5) * period / size
    x, y = np.meshgrid(c, c)  # x varies along columns, y along rows
    return x, y


def analytic(design: Design, size: int = SIZE) -> np.ndarray:
    """Pixel-centre inside test on the ideal outlines (no pixel centre lies on an outline in the
    designs used here, so strict and non-strict comparisons agree)."""
    x, y = centres_nm(design.period_nm, size)
    img = np.zeros((size, size), dtype=bool)
    for p in design.primitives:
        dx, dy = x - p.center_x_nm, y - p.center_y_nm
        if p.kind == Kind.RECTANGLE:
            inside = (np.abs(dx) < p.width_nm / 2) & (np.abs(dy) < p.height_nm / 2)
        else:
            inside = (dx / (p.width_nm / 2)) ** 2 + (dy / (p.height_nm / 2)) ** 2 < 1
            if p.kind == Kind.RING:
                hole = (dx / (p.inner_width_nm / 2)) ** 2 + (dy / (p.inner_height_nm / 2)) ** 2 < 1
                inside &= ~hole
        img |= inside
    return img


def gds_inside(design: Design, tolerance_nm: float) -> tuple[np.ndarray, list[gdstk.Polygon]]:
    x, y = centres_nm(design.period_nm)
    polys = design_polygons(design, tolerance_nm=tolerance_nm)
    pts_um = np.stack([x.ravel(), y.ravel()], axis=1) / 1000
    return np.array(gdstk.inside(pts_um, polys), dtype=bool).reshape(SIZE, SIZE), polys


def distance_to_edges_nm(points_nm: np.ndarray, polys: list[gdstk.Polygon]) -> np.ndarray:
    """Distance of each point to the nearest polygon edge."""
    best = np.full(len(points_nm), np.inf)
    for poly in polys:
        a = poly.points * 1000
        d = np.roll(a, -1, axis=0) - a
        rel = points_nm[:, None, :] - a[None]
        t = np.clip((rel * d[None]).sum(-1) / (d * d).sum(-1)[None], 0, 1)
        gap = rel - t[..., None] * d[None]
        best = np.minimum(best, np.hypot(gap[..., 0], gap[..., 1]).min(axis=1))
    return best


def transpose(lib: DesignLibrary) -> DesignLibrary:
    """The same designs mirrored in the diagonal x = y."""
    return DesignLibrary.from_arrays(
        lib.period_nm, lib.kind, lib.center_y_nm, lib.center_x_nm, lib.height_nm, lib.width_nm,
        lib.inner_height_nm, lib.inner_width_nm,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Hand-made designs
# ---------------------------------------------------------------------------------------------


def test_rectangle_covers_exactly_the_expected_pixels() -> None:
    # 640 nm period: 5 nm pixels with centres at 2.5 + 5 k. The rectangle x in [80, 120),
    # y in [170, 230) holds the centres of columns 16..23 and rows 34..45.
    img = rasterize(DesignLibrary.from_designs([Design(640.0, (R(100, 200, 40, 60),))]))
    assert img.shape == (1, SIZE, SIZE)
    assert img.dtype == np.bool_
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[34:46, 16:24] = True
    np.testing.assert_array_equal(img[0], expected)
    assert img[0].sum() == 8 * 12


def test_rectangle_edges_on_pixel_centres_are_half_open() -> None:
    # x in [82.5, 117.5], y in [172.5, 227.5]: the near edges hit centres of column 16 and row
    # 34 (solid), the far edges centres of column 23 and row 45 (not solid).
    img = rasterize(DesignLibrary.from_designs([Design(640.0, (R(100, 200, 35, 55),))]))
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[34:45, 16:23] = True
    np.testing.assert_array_equal(img[0], expected)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_rectangle_pixel_count_at_other_sizes(size: int) -> None:
    # 1 nm per 128th of the cell: at size 64 a pixel is 2 x 2 of those, at 256 half of one.
    # The rectangle x in [10, 50), y in [20, 100) of a 128 nm cell covers 40 x 80 nm.
    period = 128.0
    img = rasterize(DesignLibrary.from_designs([Design(period, (R(30, 60, 40, 80),))]), size)
    assert img.shape == (1, size, size)
    per_nm = size / period
    assert img[0].sum() == round(40 * per_nm) * round(80 * per_nm)
    np.testing.assert_array_equal(img[0], analytic(Design(period, (R(30, 60, 40, 80),)), size))


def test_hand_made_curves_match_the_analytic_test_exactly() -> None:
    # 5 nm pixels; centres sit at odd multiples of 2.5 nm so (as worked out with sums of odd
    # squares mod 8) none lies on these circles, ellipse or ring outlines.
    design = Design(
        640.0,
        (
            E(320, 320, 200, 120),  # ellipse wider than tall
            RING(160, 480, 200, 200, 100, 100),  # ring upper left: row = y, column = x
            R(520, 110, 60, 140),
        ),
    )
    img = rasterize(DesignLibrary.from_designs([design]))[0]
    np.testing.assert_array_equal(img, analytic(design))
    # Orientation spot checks: the ring's hole centre is empty, its wall solid.
    pix = 640 / SIZE
    row, col = int(480 / pix), int(160 / pix)
    assert not img[row, col]
    assert img[row, int((160 + 75) / pix)]
    # Upper-left ring: something solid at high rows, low columns; the rectangle at low rows,
    # high columns.
    assert img[int(480 / pix), int(90 / pix)]
    assert img[int(110 / pix), int(520 / pix)]
    assert not img[int(110 / pix), int(90 / pix)]


def test_empty_design_and_empty_library() -> None:
    lib = DesignLibrary.from_designs([Design(300.0, ()), Design(300.0, (R(150, 150, 100, 100),))])
    img = rasterize(lib)
    assert not img[0].any()
    assert img[1].any()
    assert rasterize(lib.take(np.zeros(0, dtype=np.int64))).shape == (0, SIZE, SIZE)


@pytest.mark.parametrize("size", [0, -64, 32, 100, 96, 129])
def test_size_must_be_a_positive_multiple_of_64(size: int) -> None:
    lib = DesignLibrary.from_designs([Design(300.0, (R(150, 150, 100, 100),))])
    with pytest.raises(ValueError, match=f"size={size}"):
        rasterize(lib, size)


# ---------------------------------------------------------------------------------------------
# Generated designs
# ---------------------------------------------------------------------------------------------


def test_generated_designs_match_the_analytic_test_exactly(
    lib: DesignLibrary, images: np.ndarray
) -> None:
    # Generated edges and centres are on the 5 nm grid, pixel centres never are, so no centre
    # lies on an outline: the raster must agree with the ideal shapes pixel for pixel.
    bad = [i for i, d in enumerate(lib.designs()) if not np.array_equal(images[i], analytic(d))]
    assert bad == []


def test_raster_agrees_with_gds_polygons(lib: DesignLibrary, images: np.ndarray) -> None:
    # Polygons approximate curves with chords within the tolerance; with 0.1 nm (well below the
    # >= 2.3 nm pixels) only pixel centres within a hair of a curve may disagree.
    tol = 0.1
    mismatched = 0
    for i, d in enumerate(lib.designs()):
        gds, polys = gds_inside(d, tol)
        img = images[i]
        diff = gds != img
        mismatched += int(diff.sum())
        iou = (gds & img).sum() / (gds | img).sum()
        assert iou >= 0.98, (i, d, iou)
        if diff.any():
            x, y = centres_nm(d.period_nm)
            pts = np.stack([x[diff], y[diff]], axis=1)
            assert distance_to_edges_nm(pts, polys).max() <= 2 * tol, (i, d)
    assert mismatched <= 0.002 * images.size


def test_raster_disagrees_with_default_polygons_only_along_curves(
    lib: DesignLibrary, images: np.ndarray
) -> None:
    # At the default 1 nm tolerance chords cut up to ~1 nm inside a curve (and into a ring's
    # hole), so pixel centres closer than that to an edge may differ, and no others.
    for i, d in enumerate(lib.designs()):
        gds, polys = gds_inside(d, 1.0)
        diff = gds != images[i]
        if diff.any():
            x, y = centres_nm(d.period_nm)
            pts = np.stack([x[diff], y[diff]], axis=1)
            assert distance_to_edges_nm(pts, polys).max() <= 1.5, (i, d)


def test_raster_area_matches_polygon_area(lib: DesignLibrary, images: np.ndarray) -> None:
    # Pixel quantisation moves each straight edge by under one pixel (<= 4.7 nm), so only
    # designs large enough for that to stay well below 3% are compared.
    checked = 0
    for i, d in enumerate(lib.designs()):
        polys = design_polygons(d)
        area = sum(p.area() for p in polys) * 1e6  # µm^2 -> nm^2
        if area < 50_000:
            continue
        pixel = d.period_nm / SIZE
        raster_area = images[i].sum() * pixel**2
        assert raster_area == pytest.approx(area, rel=0.03), (i, d)
        checked += 1
    assert checked >= 20


def test_transposed_design_gives_transposed_image(lib: DesignLibrary, images: np.ndarray) -> None:
    flipped = transpose(lib)
    np.testing.assert_array_equal(rasterize(flipped), images.transpose(0, 2, 1))


def test_transposed_hand_made_design() -> None:
    design = Design(
        500.0, (RING(150, 320, 240, 200, 120, 90), E(380, 120, 100, 160), R(380, 330, 100, 60))
    )
    lib = DesignLibrary.from_designs([design])
    img = rasterize(lib)[0]
    assert not np.array_equal(img, img.T)  # the test would be vacuous for a symmetric design
    np.testing.assert_array_equal(rasterize(transpose(lib))[0], img.T)


def test_batched_equals_one_by_one() -> None:
    # More than one chunk of 1024 so the threaded path joins chunks.
    big = generate(1100, seed=5)
    images = rasterize(big)
    assert images.shape == (1100, SIZE, SIZE)
    picks = sorted({*range(0, 1100, 37), *range(1018, 1030), 1099})
    for i in picks:
        one = DesignLibrary.from_designs([big.design(i)])  # also a narrower slot count
        np.testing.assert_array_equal(rasterize(one)[0], images[i], err_msg=str(i))
    # Sub-batches of odd sizes agree too.
    for start, stop in ((0, 3), (500, 777), (1020, 1100)):
        np.testing.assert_array_equal(rasterize(big.take(slice(start, stop))), images[start:stop])


def test_image_is_the_union_of_its_primitives(lib: DesignLibrary, images: np.ndarray) -> None:
    for i in range(0, len(lib), 5):
        d = lib.design(i)
        parts = rasterize(
            DesignLibrary.from_designs([Design(d.period_nm, (p,)) for p in d.primitives])
        )
        np.testing.assert_array_equal(parts.any(axis=0), images[i])

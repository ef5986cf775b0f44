"""Written polygons keep their designed extents: ellipse and ring tips are vertices on the 1 nm
grid, so every silicon polygon of a written chip is as wide and tall as designed (>= 100 nm).
The chip-level checks read the file back with KLayout, independent of gdstk."""

from __future__ import annotations

from pathlib import Path

import gdstk
import klayout.db as kdb
import numpy as np
import pytest

from layout.checker import check_design
from layout.chip import ChipConfig, plan_chip
from layout.design import Design, DesignLibrary, Kind, Primitive
from layout.drc import run_drc
from layout.gds_writer import write_chip
from layout.layers import Layer
from layout.polygons import design_polygons, primitive_outline_nm

E, RING, R = Primitive.ellipse, Primitive.ring, Primitive.rectangle


def _written_boxes(tmp_path: Path, design: Design, tolerance_nm: float = 1.0) -> list[kdb.Box]:
    """Bounding boxes (dbu = 1 nm) of the design's polygons as KLayout reads them from a GDS."""
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    lib.new_cell("TOP").add(*design_polygons(design, tolerance_nm))
    path = tmp_path / "cell.gds"
    lib.write_gds(str(path))
    ly = kdb.Layout()
    ly.read(str(path))
    assert ly.dbu == pytest.approx(0.001)
    li = ly.find_layer(*Layer.SILICON.value)
    return [s.bbox() for s in ly.top_cell().shapes(li).each()]


@pytest.mark.parametrize(
    "primitive",
    [
        E(200, 200, 100, 100),  # the smallest circle: 98-99 nm wide before tips were vertices
        E(200, 200, 100, 120),  # near the 40 nm tip-radius limit
        E(200, 200, 120, 100),
        E(205, 195, 140, 240),
        E(255, 300, 110, 150),
        RING(300, 300, 200, 200, 90, 90),  # 55 nm walls, 45 nm hole tip radius
        RING(305, 295, 330, 210, 110, 100),
        R(200, 200, 100, 100),
    ],
)
@pytest.mark.parametrize("tolerance_nm", [1.0, 0.5, 0.1])
def test_written_extent_equals_the_design(
    tmp_path: Path, primitive: Primitive, tolerance_nm: float
) -> None:
    design = Design(600, (primitive,))
    assert check_design(design) == []
    (box,) = _written_boxes(tmp_path, design, tolerance_nm)
    assert (box.width(), box.height()) == (primitive.width_nm, primitive.height_nm)
    assert box.center().x == primitive.center_x_nm and box.center().y == primitive.center_y_nm


@pytest.mark.parametrize(
    ("primitive", "extent"),
    [
        # tips at half nanometres (centre or half-size off the 1 nm grid) round outwards
        (E(200.5, 200, 100, 100), (101, 100)),
        (E(200, 200, 105, 101), (106, 102)),
        (E(52.5, 60, 105, 100), (105, 100)),  # centre and half-size off the grid, tips on it
        (RING(300.5, 299.5, 210, 200, 100, 90), (211, 201)),
        (E(200.3, 200.6, 100.2, 100.4), (101, 101)),
    ],
)
def test_tips_off_the_grid_round_outwards(
    tmp_path: Path, primitive: Primitive, extent: tuple[int, int]
) -> None:
    (box,) = _written_boxes(tmp_path, Design(600, (primitive,)))
    assert (box.width(), box.height()) == extent
    assert box.width() >= primitive.width_nm and box.height() >= primitive.height_nm


@pytest.mark.parametrize(
    "primitive",
    [E(200, 200, 100, 100), E(255, 300, 110, 250), RING(300, 300, 330, 200, 220, 90)],
)
@pytest.mark.parametrize("tolerance_nm", [1.0, 0.25])
def test_vertices_sit_on_the_curve_and_chords_within_the_tolerance(
    primitive: Primitive, tolerance_nm: float
) -> None:
    pts = primitive_outline_nm(primitive, tolerance_nm)
    curves = [(primitive.width_nm / 2, primitive.height_nm / 2)]
    if primitive.kind == Kind.RING:
        curves.append((primitive.inner_width_nm / 2, primitive.inner_height_nm / 2))
    dx, dy = pts[:, 0] - primitive.center_x_nm, pts[:, 1] - primitive.center_y_nm
    on_some = np.zeros(len(pts), dtype=bool)
    for a, b in curves:
        on_some |= np.abs(np.hypot(dx / a, dy / b) - 1) < 1e-9
    assert on_some.all()  # tips included: on the grid already, so not moved
    for a, b in curves:
        # the tips are vertices of every curve
        for tip in ((a, 0), (-a, 0), (0, b), (0, -b)):
            assert np.any(np.hypot(dx - tip[0], dy - tip[1]) < 1e-9), tip
    # Every chord of a curve stays within the tolerance: its midpoint is the farthest from the
    # curve for these short chords; measure its radial depth in the ellipse's own scaling.
    nxt = np.roll(pts, -1, axis=0)
    mid = (pts + nxt) / 2
    same = np.hypot(*(nxt - pts).T) > 0
    for a, b in curves:
        on = np.abs(np.hypot(dx / a, dy / b) - 1) < 1e-9
        chord = on & np.roll(on, -1) & same
        mx, my = mid[chord, 0] - primitive.center_x_nm, mid[chord, 1] - primitive.center_y_nm
        depth = (1 - np.hypot(mx / a, my / b)) * max(a, b)
        assert depth.max() <= tolerance_nm + 1e-9
        assert depth.max() > tolerance_nm / 5  # and not many times more vertices than needed


def test_a_ring_is_one_polygon_with_its_hole_clockwise(tmp_path: Path) -> None:
    ring = RING(300, 300, 330, 200, 220, 90)
    (poly,) = design_polygons(Design(600, (ring,)))
    ideal = np.pi / 4 * (330 * 200 - 220 * 90)
    assert poly.area() * 1e6 == pytest.approx(ideal, rel=0.01)
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    lib.new_cell("TOP").add(poly)
    lib.write_gds(str(tmp_path / "ring.gds"))
    ly = kdb.Layout()
    ly.read(str(tmp_path / "ring.gds"))
    region = kdb.Region(ly.top_cell().begin_shapes_rec(ly.find_layer(1, 0))).merged()
    (merged,) = region.each()
    assert merged.holes() == 1
    hole = np.array([(pt.x, pt.y) for pt in merged.each_point_hole(0)])
    assert tuple(np.ptp(hole, axis=0)) == (220, 90)


@pytest.fixture(scope="module")
def chip_gds(
    tmp_path_factory: pytest.TempPathFactory, library: DesignLibrary
) -> tuple[DesignLibrary, Path]:
    """All 400 designs of the shared library on one chip (one pad each)."""
    cfg = ChipConfig(thickness_nm=450, rows=20, cols=20, replicas=1, companion_size=0)
    out = tmp_path_factory.mktemp("extents")
    manifest = plan_chip(library, cfg)
    write_chip(manifest, cfg, out / "chip.gds", out / "chip.h5")
    return manifest.designs, out / "chip.gds"


def test_every_silicon_polygon_of_a_chip_has_its_designed_extent(
    chip_gds: tuple[DesignLibrary, Path],
) -> None:
    designs, gds = chip_gds
    assert len(designs) == 400
    ly = kdb.Layout()
    ly.read(str(gds))
    li = ly.find_layer(*Layer.SILICON.value)
    nm_per_dbu = ly.dbu * 1000
    checked = curved = 0
    # Every silicon polygon anywhere in the hierarchy (unit cells and fiducials).
    for cell in ly.each_cell():
        for shape in cell.shapes(li).each():
            box = shape.bbox()
            assert min(box.width(), box.height()) * nm_per_dbu >= 100, (cell.name, box)
            checked += 1
    assert checked > 400
    # And per primitive: each unit cell holds one polygon per primitive, of the designed box.
    for i in range(len(designs)):
        design = designs.design(i)
        cell = ly.cell(f"D{int(designs.design_id[i])}")
        boxes = {
            (b.left, b.bottom, b.right, b.top) for b in (s.bbox() for s in cell.shapes(li).each())
        }
        assert len(boxes) == len(design.primitives) == cell.shapes(li).size()
        for p in design.primitives:
            want = (
                p.center_x_nm - p.width_nm / 2,
                p.center_y_nm - p.height_nm / 2,
                p.center_x_nm + p.width_nm / 2,
                p.center_y_nm + p.height_nm / 2,
            )
            assert tuple(round(v / nm_per_dbu) for v in want) in boxes, (i, p)
            curved += p.kind != Kind.RECTANGLE
    assert curved > 300


def test_the_extent_chip_is_drc_clean(chip_gds: tuple[DesignLibrary, Path]) -> None:
    result = run_drc(chip_gds[1])
    assert result.clean, result.markers[:5]

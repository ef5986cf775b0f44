"""The fabrication checker on hand-made designs whose violations are worked out by hand.

Every expected size below is derived from the geometry in the comment next to it, never copied
from a run of the checker. Defaults (``DesignRules()``): min_size 100, min_feature 50, min_gap 50,
grid 5, border_margin 25, min_tip_radius 40, min_hole_tip_radius 45, curve_allowance 2.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from layout.checker import Rule, Violation, check_design, check_library
from layout.design import Design, DesignLibrary, Primitive
from layout.rules import DesignRules

R = Primitive.rectangle
E = Primitive.ellipse
RING = Primitive.ring

TOL = 0.01  # nm

CURVED_GAP = 50.0 + 2.5  # min_gap + curve allowance
CURVED_WALL = 50.0 + 2.5  # min_feature + curve allowance


def only(design: Design, rules: DesignRules | None = None) -> Violation:
    """The single violation of ``design``; fails if there are none or several."""
    found = check_design(design, rules)
    assert len(found) == 1, [str(v) for v in found]
    return found[0]


def assert_violation(
    v: Violation, rule: Rule, primitives: tuple[int, ...], size: float | None, limit: float
) -> None:
    assert v.rule is rule, str(v)
    assert v.primitives == primitives, str(v)
    assert v.design_index == 0
    if size is not None:
        assert v.size_nm == pytest.approx(size, abs=TOL), str(v)
    assert v.limit_nm == pytest.approx(limit, abs=TOL), str(v)


# ---------------------------------------------------------------------------------------------
# A valid design
# ---------------------------------------------------------------------------------------------


VALID = Design(
    600.0,
    (
        # Ring: outer radius 125, hole radius 60 -> wall 65 >= 52.5, hole 120 >= 52.5,
        # hole tip radius 60 >= 45; x, y in [50, 300] -> border 50 >= 25.
        RING(175, 175, 250, 250, 120, 120),
        # Ellipse: semi-axes 75 x 100 -> tip 75^2/100 = 56.25 >= 40; x in [375, 525],
        # y in [75, 275]. Gap to the ring along the shared axis y = 175: 375 - 300 = 75.
        E(450, 175, 150, 200),
        # Rectangle: x in [150, 450], y in [375, 525]: 75 above the ring, 100 above the ellipse,
        # border 75; periodic copies are >= 125 away.
        R(300, 450, 300, 150),
    ),
)


def test_valid_design_with_rectangle_ellipse_and_ring_passes() -> None:
    assert check_design(VALID) == []


def test_valid_design_passes_in_library_form() -> None:
    report = check_library(DesignLibrary.from_designs([VALID, VALID]))
    assert report.passed.tolist() == [True, True]
    assert report.counts() == {}


# ---------------------------------------------------------------------------------------------
# One test per rule
# ---------------------------------------------------------------------------------------------


def test_bad_period_off_grid() -> None:
    # 302 nm is not a multiple of 5; the rectangle is 102 nm from the far border.
    v = only(Design(302.0, (R(150, 150, 100, 100),)))
    assert_violation(v, Rule.BAD_PERIOD, (), 302.0, 5.0)


def test_bad_period_non_positive() -> None:
    found = check_design(Design(0.0, (R(150, 150, 100, 100),)))
    assert Rule.BAD_PERIOD in {v.rule for v in found}


def test_off_grid_centre() -> None:
    # Centre x = 152 is not on the 5 nm grid; everything else is fine (border 102).
    v = only(Design(400.0, (R(152, 200, 100, 100),)))
    assert_violation(v, Rule.OFF_GRID, (0,), None, 5.0)


def test_off_grid_ring_hole_size() -> None:
    # Hole width 122 is off the grid (wall 64, hole tip radius 60 otherwise fine).
    v = only(Design(600.0, (RING(300, 300, 250, 250, 122, 120),)))
    assert_violation(v, Rule.OFF_GRID, (0,), None, 5.0)


def test_off_grid_edge_with_centre_and_size_on_grid() -> None:
    # Centre 200 and width 105 are both multiples of 5, but the edges sit at 147.5 and 252.5:
    # between grid points and between the 1 nm points of the GDS file.
    v = only(Design(400.0, (R(200, 200, 105, 100),)))
    assert_violation(v, Rule.OFF_GRID, (0,), None, 5.0)


def test_edges_on_grid_pass() -> None:
    # Centre 200 with width 110: edges at 145 and 255, all on the grid.
    assert check_design(Design(400.0, (R(200, 200, 110, 100),))) == []


def test_empty_design_fails() -> None:
    v = only(Design(400.0, ()))
    assert_violation(v, Rule.EMPTY, (), 0.0, 1.0)


def test_min_size() -> None:
    # 90 x 200 rectangle: smaller side 90 < 100.
    v = only(Design(400.0, (R(200, 200, 90, 200),)))
    assert_violation(v, Rule.MIN_SIZE, (0,), 90.0, 100.0)


def test_outside_cell() -> None:
    # x in [-10, 90]: 10 nm outside the left border.
    v = only(Design(400.0, (R(40, 200, 100, 100),)))
    assert_violation(v, Rule.OUTSIDE_CELL, (0,), -10.0, 0.0)


def test_border_margin() -> None:
    # Top edge at 385 in a 400 cell: 15 nm from the border, < 25.
    v = only(Design(400.0, (R(200, 335, 100, 100),)))
    assert_violation(v, Rule.BORDER_MARGIN, (0,), 15.0, 25.0)


def test_tip_radius() -> None:
    # Ellipse 100 x 250: semi-axes 50, 125 -> tip radius 50^2 / 125 = 20 < 40.
    v = only(Design(400.0, (E(200, 200, 100, 250),)))
    assert_violation(v, Rule.TIP_RADIUS, (0,), 50.0**2 / 125.0, 40.0)


def test_ring_wall() -> None:
    # Circle ring 200 with a 100 hole: wall (200 - 100) / 2 = 50 < 52.5.
    v = only(Design(400.0, (RING(200, 200, 200, 200, 100, 100),)))
    assert_violation(v, Rule.RING_WALL, (0,), 50.0, CURVED_WALL)


def test_ring_wall_of_elliptical_ring_is_the_true_distance() -> None:
    # Outer circle radius 150, elliptical hole with semi-axes 50 x 100: the nearest points are
    # the hole's tips on the long axis, 150 - 100 = 50 from the outer circle.
    v = only(
        Design(600.0, (RING(300, 300, 300, 300, 100, 200),)), DesignRules(min_hole_tip_radius_nm=0)
    )
    assert_violation(v, Rule.RING_WALL, (0,), 50.0, CURVED_WALL)


def test_ring_hole() -> None:
    # A 50 nm hole is below 52.5 and its tip radius (25) below 45 too, so the hole-tip rule is
    # relaxed to 20 to isolate the ring_hole rule. Wall (200 - 50) / 2 = 75.
    rules = DesignRules(min_hole_tip_radius_nm=20)
    v = only(Design(400.0, (RING(200, 200, 200, 200, 50, 50),)), rules)
    assert_violation(v, Rule.RING_HOLE, (0,), 50.0, 50.0 + 2.5)


def test_hole_tip_radius() -> None:
    # Circle ring 400 with a 100 x 200 hole: hole tip 50^2 / 100 = 25 < 45; wall 200 - 100 = 100.
    v = only(Design(600.0, (RING(300, 300, 400, 400, 100, 200),)))
    assert_violation(v, Rule.HOLE_TIP_RADIUS, (0,), 25.0, 45.0)


def test_overlap() -> None:
    # x in [100, 200] and [150, 250].
    v = only(Design(400.0, (R(150, 200, 100, 100), R(200, 200, 100, 100))))
    assert_violation(v, Rule.OVERLAP, (0, 1), None, 0.0)


def test_touching_rectangles_overlap() -> None:
    # x in [100, 200] and [200, 300]: they share an edge, a gap of 0.
    v = only(Design(400.0, (R(150, 200, 100, 100), R(250, 200, 100, 100))))
    assert v.rule is Rule.OVERLAP
    assert v.primitives == (0, 1)


def test_overlap_of_ellipse_and_rectangle() -> None:
    # Circle radius 100 at (200, 200) reaches x = 300; the rectangle starts at x = 290.
    v = only(Design(600.0, (E(200, 200, 200, 200), R(340, 200, 100, 100))))
    assert_violation(v, Rule.OVERLAP, (0, 1), None, 0.0)


def test_gap() -> None:
    # x in [100, 200] and [205, 305]: 5 nm apart.
    v = only(Design(400.0, (R(150, 200, 100, 100), R(255, 200, 100, 100))))
    assert_violation(v, Rule.GAP, (0, 1), 5.0, 50.0)


def test_gap_at_the_limit_passes() -> None:
    # x in [100, 200] and [250, 350]: exactly 50 nm, which is allowed.
    assert check_design(Design(400.0, (R(150, 200, 100, 100), R(300, 200, 100, 100)))) == []


def test_gap_between_rectangle_corners_is_euclidean() -> None:
    # Corners at (200, 200) and (230, 240): distance hypot(30, 40) = 50 -> passes, although
    # each axis alone is below 50 ...
    ok = Design(500.0, (R(150, 150, 100, 100), R(280, 290, 100, 100)))
    assert check_design(ok) == []
    # ... and corners at (200, 200), (230, 235): hypot(30, 35) < 50.
    v = only(Design(500.0, (R(150, 150, 100, 100), R(280, 285, 100, 100))))
    assert_violation(v, Rule.GAP, (0, 1), math.hypot(30, 35), 50.0)


def test_periodic_gap() -> None:
    # 280 wide in a 300 cell: 20 nm to its own copy in the next cell (border margin 10 allowed).
    rules = DesignRules(border_margin_nm=0)
    v = only(Design(300.0, (R(150, 150, 280, 100),)), rules)
    assert_violation(v, Rule.PERIODIC_GAP, (0, 0), 20.0, 50.0)


def test_periodic_gap_between_two_primitives() -> None:
    # A: x in [10, 110], B: x in [190, 290] (in-cell gap 80). B's copy in the cell to the left
    # spans x in [-110, -10]: 20 nm from A. Border margin 0 so A's 10 nm border is allowed.
    rules = DesignRules(border_margin_nm=0)
    v = only(Design(300.0, (R(60, 150, 100, 100), R(240, 150, 100, 100))), rules)
    assert_violation(v, Rule.PERIODIC_GAP, (0, 1), 20.0, 50.0)


def test_periodic_gap_across_the_cell_corner() -> None:
    # A: [10, 110]^2, B: [190, 290]^2. In-cell and side copies are >= hypot(20, 80) apart, but
    # B's diagonal copy [-110, -10]^2 has its corner (-10, -10) hypot(20, 20) from A's (10, 10).
    rules = DesignRules(border_margin_nm=0)
    v = only(Design(300.0, (R(60, 60, 100, 100), R(240, 240, 100, 100))), rules)
    assert_violation(v, Rule.PERIODIC_GAP, (0, 1), math.hypot(20, 20), 50.0)


def test_periodic_gap_of_curved_outline_uses_allowance() -> None:
    # Ellipse 200 x 250 in a 300 cell: 50 nm to its copy above, fine for rectangles but below
    # 52.5 for a curved outline. Border margin 25 is met exactly (y in [25, 275]).
    v = only(Design(300.0, (E(150, 150, 200, 250),)))
    assert_violation(v, Rule.PERIODIC_GAP, (0, 0), 50.0, CURVED_GAP)


# ---------------------------------------------------------------------------------------------
# Nesting in a ring's hole
# ---------------------------------------------------------------------------------------------

# Ring: outer radius 250 (wall 75 to a hole of radius 175), centred in a 600 cell (border 50).
NEST_RING = RING(300, 300, 500, 500, 350, 350)


@pytest.mark.parametrize("ring_first", [True, False])
def test_rectangle_nested_in_ring_hole_with_clearance_75_passes(ring_first: bool) -> None:
    # Centred 120 x 160 rectangle: corners hypot(60, 80) = 100 from the centre, 175 - 100 = 75.
    rect = R(300, 300, 120, 160)
    prims = (NEST_RING, rect) if ring_first else (rect, NEST_RING)
    assert check_design(Design(600.0, prims)) == []


@pytest.mark.parametrize("ring_first", [True, False])
def test_rectangle_nested_in_ring_hole_too_close_is_a_gap(ring_first: bool) -> None:
    # Shifted 40 to the right: the far corners are hypot(100, 80) from the hole's centre.
    rect = R(340, 300, 120, 160)
    prims = (NEST_RING, rect) if ring_first else (rect, NEST_RING)
    v = only(Design(600.0, prims))
    assert_violation(v, Rule.GAP, (0, 1), 175.0 - math.hypot(100, 80), CURVED_GAP)


def test_rectangle_poking_out_of_ring_hole_overlaps() -> None:
    # Shifted 120: right edge at 480, past the hole's edge (475) at y = 300.
    v = only(Design(600.0, (NEST_RING, R(420, 300, 120, 160))))
    assert_violation(v, Rule.OVERLAP, (0, 1), None, 0.0)


def test_ellipse_nested_in_ring_hole() -> None:
    # Concentric circle of radius 100 in a hole of radius 175: clearance 75 -> passes; a radius
    # of 125 leaves 50 < 52.5.
    assert check_design(Design(600.0, (NEST_RING, E(300, 300, 200, 200)))) == []
    v = only(Design(600.0, (NEST_RING, E(300, 300, 250, 250))))
    assert_violation(v, Rule.GAP, (0, 1), 50.0, CURVED_GAP)


# ---------------------------------------------------------------------------------------------
# Exact Euclidean gaps involving curves
# ---------------------------------------------------------------------------------------------


def test_diagonal_circles_with_overlapping_boxes_use_exact_gap() -> None:
    # Boxes [100, 300]^2 and [270, 470]^2 overlap, but the circles (radius 100) are
    # hypot(170, 170) - 200 ~ 40.4 apart.
    v = only(Design(600.0, (E(200, 200, 200, 200), E(370, 370, 200, 200))))
    assert_violation(v, Rule.GAP, (0, 1), math.hypot(170, 170) - 200, CURVED_GAP)


def test_diagonal_circles_far_enough_pass_although_boxes_touch() -> None:
    # Boxes [100, 300]^2 and [300, 500]^2 touch; the circles are hypot(200, 200) - 200 ~ 82.8
    # apart.
    assert check_design(Design(600.0, (E(200, 200, 200, 200), E(400, 400, 200, 200)))) == []


def test_gap_between_circle_and_rectangle_edge() -> None:
    # Circle radius 100 at (200, 300) reaches x = 300; rectangle from x = 340: gap 40.
    v = only(Design(600.0, (E(200, 300, 200, 200), R(390, 300, 100, 200))))
    assert_violation(v, Rule.GAP, (0, 1), 40.0, CURVED_GAP)


def test_gap_between_circle_and_rectangle_corner() -> None:
    # Circle radius 100 at (200, 200); the square [300, 400]^2 has its nearest corner at
    # (300, 300): gap hypot(100, 100) - 100 ~ 41.4, although the boxes touch.
    v = only(Design(600.0, (E(200, 200, 200, 200), R(350, 350, 100, 100))))
    assert_violation(v, Rule.GAP, (0, 1), math.hypot(100, 100) - 100, CURVED_GAP)


def test_gap_between_ellipse_tip_and_rectangle() -> None:
    # Ellipse semi-axes 100 (x) x 80 (y) at (200, 300): its tip is at x = 300. A rectangle from
    # x = 330 is 30 away (the tip is the closest point since the rectangle spans the tip's y).
    v = only(Design(600.0, (E(200, 300, 200, 160), R(380, 300, 100, 200))))
    assert_violation(v, Rule.GAP, (0, 1), 30.0, CURVED_GAP)


def _ellipse_points(cx: float, cy: float, w: float, h: float, t: np.ndarray) -> np.ndarray:
    return np.stack([cx + w / 2 * np.cos(t), cy + h / 2 * np.sin(t)], axis=-1)


def _brute_ellipse_box_gap(ell: Primitive, box: Primitive) -> float:
    """Distance from a densely sampled ellipse outline to an axis-aligned box."""
    p = _ellipse_points(
        ell.center_x_nm, ell.center_y_nm, ell.width_nm, ell.height_nm,
        np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False),
    )  # fmt: skip
    x0, x1 = box.center_x_nm - box.width_nm / 2, box.center_x_nm + box.width_nm / 2
    y0, y1 = box.center_y_nm - box.height_nm / 2, box.center_y_nm + box.height_nm / 2
    dx = np.maximum(np.maximum(x0 - p[:, 0], 0), p[:, 0] - x1)
    dy = np.maximum(np.maximum(y0 - p[:, 1], 0), p[:, 1] - y1)
    return float(np.hypot(dx, dy).min())


def _brute_ellipse_ellipse_gap(a: Primitive, b: Primitive) -> float:
    """Closest pair of points on two sampled ellipse outlines, refined around the best pair."""
    n = 2000
    ta = tb = np.linspace(0, 2 * np.pi, n, endpoint=False)
    step = 2 * np.pi / n
    best = np.inf
    for _ in range(3):
        pa = _ellipse_points(a.center_x_nm, a.center_y_nm, a.width_nm, a.height_nm, ta)
        pb = _ellipse_points(b.center_x_nm, b.center_y_nm, b.width_nm, b.height_nm, tb)
        d = np.hypot(pa[:, None, 0] - pb[None, :, 0], pa[:, None, 1] - pb[None, :, 1])
        i, j = np.unravel_index(np.argmin(d), d.shape)
        best = min(best, float(d[i, j]))
        ta = np.linspace(ta[i] - 2 * step, ta[i] + 2 * step, n)
        tb = np.linspace(tb[j] - 2 * step, tb[j] + 2 * step, n)
        step = 4 * step / n
    return best


def test_gap_between_ellipse_and_rectangle_corner_matches_brute_force() -> None:
    # Ellipse semi-axes 120 x 80 at (250, 250) (tip 80^2/120 ~ 53.3), square [390, 490] x
    # [320, 420]: the nearest points are on the ellipse's upper-right flank.
    ell, rect = E(250, 250, 240, 160), R(440, 370, 100, 100)
    expected = _brute_ellipse_box_gap(ell, rect)
    assert 0 < expected < CURVED_GAP
    v = only(Design(600.0, (ell, rect)))
    assert_violation(v, Rule.GAP, (0, 1), expected, CURVED_GAP)


def test_gap_between_two_ellipses_matches_brute_force() -> None:
    a, b = E(200, 200, 240, 160), E(390, 330, 160, 200)  # tips 53.3 and 64
    expected = _brute_ellipse_ellipse_gap(a, b)
    assert 0 < expected < CURVED_GAP
    v = only(Design(600.0, (a, b)))
    assert_violation(v, Rule.GAP, (0, 1), expected, CURVED_GAP)


def test_gap_between_ring_and_rectangle_uses_outer_outline() -> None:
    # Ring outer radius 125 at (200, 300) reaches x = 325; rectangle from x = 365: gap 40.
    ring = RING(200, 300, 250, 250, 120, 120)
    v = only(Design(600.0, (ring, R(415, 300, 100, 200))))
    assert_violation(v, Rule.GAP, (0, 1), 40.0, CURVED_GAP)


def test_periodic_gap_between_circles_uses_allowance() -> None:
    # A (radius 100) at (125, 125), B (radius 100) at (475, 125): in-cell gap 350 - 200 = 150,
    # but B's copy at (-125, 125) is 250 - 200 = 50 from A, below 52.5 for curves.
    v = only(Design(600.0, (E(125, 125, 200, 200), E(475, 125, 200, 200))))
    assert_violation(v, Rule.PERIODIC_GAP, (0, 1), 50.0, CURVED_GAP)


# ---------------------------------------------------------------------------------------------
# Indices follow the design as given
# ---------------------------------------------------------------------------------------------


def test_primitive_indices_follow_the_given_order_not_canonical_order() -> None:
    # Canonical order sorts rectangles before ellipses before rings; here the ring comes first.
    # Ellipse (index 1) and rectangle (index 2) are 5 nm apart; the ellipse has a sharp tip.
    ring = RING(175, 175, 250, 250, 120, 120)  # valid on its own, far from the others
    ell = E(450, 450, 100, 250)  # tip 20; x in [400, 500], y in [325, 575]
    rect = R(350, 450, 90, 100)  # x in [305, 395]: 5 from the ellipse's side; 90 < 100
    found = check_design(Design(600.0, (ring, ell, rect)))
    got = {(v.rule, v.primitives) for v in found}
    assert got == {
        (Rule.TIP_RADIUS, (1,)),
        (Rule.MIN_SIZE, (2,)),
        (Rule.GAP, (1, 2)),
    }, [str(v) for v in found]
    gap = next(v for v in found if v.rule is Rule.GAP)
    assert gap.size_nm == pytest.approx(5.0, abs=TOL)


def test_library_check_uses_canonical_indices_and_counts() -> None:
    ring = RING(175, 175, 250, 250, 120, 120)
    ell = E(450, 450, 100, 250)
    lib = DesignLibrary.from_designs([VALID, Design(600.0, (ring, ell))])
    report = check_library(lib)
    assert report.passed.tolist() == [True, False]
    assert report.counts() == {"tip_radius": 1}
    (v,) = report.violations()
    # In the library the ellipse is canonical slot 0 (ellipses sort before rings).
    assert v.design_index == 1
    assert v.primitives == (0,)
    assert lib.design(1).primitives[0] == ell


def test_violation_str_names_rule_and_primitives() -> None:
    v = only(Design(400.0, (R(150, 200, 100, 100), R(255, 200, 100, 100))))
    text = str(v)
    assert "gap" in text
    assert "0,1" in text
    assert "5.00" in text

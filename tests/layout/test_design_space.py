"""The design space: every decoded design is on the grid and passes the checker (after repair),
the box's discrete parts land where the scores say, and the user's constraints hold."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from layout.checker import check_library
from layout.design import Kind
from layout.design_space import SLOT_WIDTH, DesignSpace, PrimitiveLimits
from layout.rules import DesignRules

KINDS = (Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING)


def space(**changes: object) -> DesignSpace:
    base = DesignSpace((300, 400, 500, 600), (150.0, 178.0, 195.0), KINDS, 4, DesignRules())
    return replace(base, **changes)


def test_random_candidates_decode_to_clean_designs_on_the_grid() -> None:
    s = space()
    assert s.dimension == 4 * (SLOT_WIDTH + 3) + 4 + 3
    decoded = s.decode(s.random(2000, np.random.default_rng(0)))
    ok = decoded.feasible
    assert ok.mean() > 0.8  # measured 0.93: most of the box repairs into a design
    lib = decoded.library.take(np.flatnonzero(ok))
    assert check_library(lib, s.rules).passed.all()
    present = lib.kind >= 0
    for values in (lib.center_x_nm, lib.center_y_nm, lib.width_nm / 2, lib.height_nm / 2):
        on_grid = np.abs(values / 5.0 - np.round(values / 5.0)) < 1e-9
        assert on_grid[present].all()
    assert set(np.unique(lib.period_nm)) == {300.0, 400.0, 500.0, 600.0}
    assert set(np.unique(decoded.thickness_nm)) == {150.0, 178.0, 195.0}
    assert (decoded.repaired <= ok).all() and decoded.repaired.any()


def one_rectangle(s: DesignSpace, period_choice: int, w: float, h: float) -> np.ndarray:
    x = np.zeros((1, s.dimension))
    x[0, 0] = 1.0  # slot 0 present, the others absent
    x[0, 1:7] = [0.5, 0.5, w, h, 0.0, 0.0]
    x[0, SLOT_WIDTH] = 1.0  # rectangle
    x[0, 4 * s.slot_width + period_choice] = 1.0
    x[0, 4 * s.slot_width + 4 + 2] = 1.0  # 195 nm
    return x


def test_scores_pick_the_period_kind_and_sizes() -> None:
    s = space()
    d = s.decode(one_rectangle(s, 1, 1.0, 0.0))
    lim = PrimitiveLimits.from_rules(s.rules)
    assert d.feasible[0] and not d.repaired[0]
    assert d.library.period_nm[0] == 400 and d.thickness_nm[0] == 195
    (k,) = np.flatnonzero(d.library.kind[0] >= 0)
    assert d.library.kind[0, k] == Kind.RECTANGLE
    assert d.library.width_nm[0, k] == 400 - 2 * lim.margin_nm  # the whole usable span
    assert d.library.height_nm[0, k] == lim.min_size_nm
    assert d.library.center_x_nm[0, k] == 200  # centred: the room is shared


def test_overlapping_primitives_are_repaired_by_dropping_one() -> None:
    s = space()
    x = one_rectangle(s, 3, 0.9, 0.9)
    x[0, s.slot_width] = 1.0  # slot 1 present: the same big rectangle again, on top
    x[0, s.slot_width + 1 : s.slot_width + 7] = x[0, 1:7]
    x[0, s.slot_width + SLOT_WIDTH] = 1.0
    d = s.decode(x)
    assert d.feasible[0] and d.repaired[0]
    assert (d.library.kind[0] >= 0).sum() == 1


def test_user_constraints_hold() -> None:
    strict = replace(DesignRules(), min_feature_nm=80.0, min_size_nm=100.0, min_gap_nm=90.0)
    s = space(kinds=(Kind.ELLIPSE,), periods_nm=(500,), rules=strict, max_primitives=2)
    d = s.decode(s.random(500, np.random.default_rng(1)))
    lib = d.library.take(np.flatnonzero(d.feasible))
    assert len(lib) > 300
    assert set(np.unique(lib.kind[lib.kind >= 0])) == {Kind.ELLIPSE}
    assert (lib.period_nm == 500).all()
    assert check_library(lib, strict).passed.all()
    with pytest.raises(ValueError, match="shape"):
        s.decode(np.zeros((3, s.dimension + 1)))


def test_generator_designs_encode_into_points_that_decode_back() -> None:
    from layout.generator import generate

    s = space(thicknesses_nm=(178.0,))
    lib = generate(1000, seed=1)
    x = s.encode(lib, np.full(len(lib), 178.0))
    assert x.shape == (1000, s.dimension) and (x >= 0).all() and (x <= 1).all()
    d = s.decode(x)
    assert d.feasible.all()
    # Measured 98 %: the rest land one grid step off, still clean designs near the original.
    assert (d.library.design_id == lib.design_id).mean() > 0.95
    with pytest.raises(ValueError, match="thickness"):
        s.encode(lib, np.full(len(lib), 150.0))


def test_contains_names_the_designs_a_space_can_hold() -> None:
    from layout.generator import generate

    lib = generate(400, seed=4)
    thick = np.full(len(lib), 178.0)
    s = space(periods_nm=(400, 500), kinds=(Kind.RECTANGLE, Kind.ELLIPSE))
    inside = s.contains(lib, thick)
    expected = np.isin(lib.period_nm, (400, 500)) & ~(lib.kind == Kind.RING).any(axis=1)
    np.testing.assert_array_equal(inside, expected)
    assert not s.contains(lib, np.full(len(lib), 160.0)).any()
    strict = space(rules=replace(DesignRules(), min_gap_nm=150.0))
    assert strict.contains(lib, thick).sum() < space().contains(lib, thick).sum()

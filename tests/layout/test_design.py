"""Designs, the padded columnar library and the content-hash ``design_id``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layout.design import GEOMETRY_COLUMNS, Design, DesignLibrary, Kind, Primitive

R = Primitive.rectangle
E = Primitive.ellipse
RING = Primitive.ring

COLUMNS = GEOMETRY_COLUMNS
ARRAYS = ("design_id", "period_nm", "kind", *COLUMNS)

THREE = Design(
    600.0, (RING(175, 175, 250, 250, 120, 120), E(450, 175, 150, 200), R(300, 450, 300, 150))
)
ONE = Design(300.0, (R(150, 150, 100, 100),))
TWO = Design(400.0, (E(120, 120, 140, 140), E(280, 280, 140, 140)))
FOUR = Design(
    600.0,
    (
        R(100, 100, 100, 100),
        R(300, 100, 100, 100),
        E(100, 300, 100, 100),
        RING(400, 400, 250, 250, 100, 100),
    ),
)


def assert_same_arrays(a: DesignLibrary, b: DesignLibrary) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def as_set(d: Design) -> tuple[float, frozenset[Primitive]]:
    return d.period_nm, frozenset(d.primitives)


# ---------------------------------------------------------------------------------------------
# design_id
# ---------------------------------------------------------------------------------------------


def test_design_id_is_a_non_negative_int64_and_repeatable() -> None:
    ids = {THREE.design_id for _ in range(3)}
    assert len(ids) == 1
    (i,) = ids
    assert isinstance(i, int)
    assert 0 <= i < 2**63
    assert DesignLibrary.from_designs([THREE]).design_id.dtype == np.int64


def test_design_id_is_stable_across_processes() -> None:
    # A content hash must not depend on Python's per-process hash seed.
    code = (
        "from layout.design import Design, Primitive as P;"
        "print(Design(600.0, (P.ring(175, 175, 250, 250, 120, 120), P.ellipse(450, 175, 150, 200),"
        " P.rectangle(300, 450, 300, 150))).design_id)"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": src}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(int(run.stdout.strip()))
    assert outs == {THREE.design_id}


def test_design_id_independent_of_primitive_order() -> None:
    ids = {Design(FOUR.period_nm, p).design_id for p in itertools.permutations(FOUR.primitives)}
    assert ids == {FOUR.design_id}


def test_design_id_independent_of_padding_width() -> None:
    narrow = DesignLibrary.from_designs([ONE, TWO])
    wide = DesignLibrary.from_designs([FOUR])
    assert narrow.slots == 2
    assert wide.slots == 4
    joined = DesignLibrary.concatenate([narrow, wide])
    assert joined.slots == 4
    np.testing.assert_array_equal(joined.design_id, [ONE.design_id, TWO.design_id, FOUR.design_id])
    # Re-canonicalising the padded arrays recomputes the same ids from the 4-slot rows.
    rebuilt = DesignLibrary.from_arrays(
        joined.period_nm, joined.kind, *(getattr(joined, c) for c in COLUMNS)
    )
    np.testing.assert_array_equal(rebuilt.design_id, joined.design_id)
    # And so does building the same designs alongside a wider one.
    mixed = DesignLibrary.from_designs([ONE, FOUR, TWO])
    np.testing.assert_array_equal(mixed.design_id, [ONE.design_id, FOUR.design_id, TWO.design_id])


def test_design_id_ignores_hole_sizes_of_non_rings() -> None:
    plain = Design(300.0, (R(150, 150, 100, 100),))
    with_junk = Design(300.0, (Primitive(Kind.RECTANGLE, 150, 150, 100, 100, 40, 60),))
    assert with_junk.design_id == plain.design_id


@pytest.mark.parametrize(
    "changed",
    [
        Design(305.0, ONE.primitives),  # period
        Design(300.0, (R(155, 150, 100, 100),)),  # centre x
        Design(300.0, (R(150, 155, 100, 100),)),  # centre y
        Design(300.0, (R(150, 150, 105, 100),)),  # width
        Design(300.0, (R(150, 150, 100, 105),)),  # height
        Design(300.0, (R(150, 150, 100, 100), R(150, 150, 100, 100))),  # duplicated
        Design(300.0, (E(150, 150, 100, 100),)),  # kind
        Design(300.0, (R(150, 150, 100.001, 100),)),  # 1 pm
    ],
)
def test_design_id_changes_with_geometry(changed: Design) -> None:
    assert changed.design_id != ONE.design_id


def test_design_id_is_quantised_to_one_picometre() -> None:
    assert Design(300.0, (R(150, 150, 100.0001, 100),)).design_id == ONE.design_id


def test_design_id_changes_with_ring_hole() -> None:
    a = Design(600.0, (RING(300, 300, 300, 300, 100, 100),))
    b = Design(600.0, (RING(300, 300, 300, 300, 100, 110),))
    c = Design(600.0, (RING(300, 300, 300, 300, 110, 100),))
    assert len({a.design_id, b.design_id, c.design_id}) == 3


def test_swapping_x_and_y_changes_the_id() -> None:
    # Geometry that is transposed is a different design (its optics differ with polarisation).
    a = Design(400.0, (R(150, 200, 100, 200),))
    b = Design(400.0, (R(200, 150, 200, 100),))
    assert a.design_id != b.design_id


# ---------------------------------------------------------------------------------------------
# from_designs / design() round trip
# ---------------------------------------------------------------------------------------------


def test_from_designs_round_trip() -> None:
    designs = [ONE, TWO, THREE, FOUR]
    lib = DesignLibrary.from_designs(designs)
    assert len(lib) == 4
    assert lib.slots == 4
    back = list(lib.designs())
    assert [as_set(d) for d in back] == [as_set(d) for d in designs]
    assert [d.design_id for d in back] == [d.design_id for d in designs]
    # Designs come back with plain floats and Kind members.
    p = back[2].primitives[0]
    assert type(p.center_x_nm) is float
    assert isinstance(p.kind, Kind)
    # The round trip of the round trip is exact, arrays included.
    assert_same_arrays(DesignLibrary.from_designs(back), lib)


def test_library_is_canonical_and_padded() -> None:
    lib = DesignLibrary.from_designs([ONE, THREE])
    # ONE has one primitive: three EMPTY slots with zero geometry.
    assert lib.present.tolist() == [[True, False, False], [True, True, True]]
    assert (lib.kind[0, 1:] == Kind.EMPTY).all()
    for c in COLUMNS:
        assert (getattr(lib, c)[0, 1:] == 0).all()
    # Canonical order: rectangles, ellipses, rings.
    assert lib.kind[1].tolist() == [Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING]
    ring = lib.design(1).primitives[2]
    assert ring == THREE.primitives[0]
    # Non-ring primitives have no hole.
    assert lib.inner_width_nm[1, :2].tolist() == [0.0, 0.0]


def test_canonical_order_does_not_depend_on_input_order() -> None:
    a = DesignLibrary.from_designs([FOUR])
    b = DesignLibrary.from_designs([Design(FOUR.period_nm, FOUR.primitives[::-1])])
    assert_same_arrays(a, b)


def test_empty_design_round_trip() -> None:
    lib = DesignLibrary.from_designs([Design(300.0, ()), ONE])
    assert lib.design(0) == Design(300.0, ())
    assert lib.design_id[0] != lib.design_id[1]


def test_from_arrays_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        DesignLibrary.from_arrays(np.array([300.0]), np.array([0]), 150, 150, 100, 100)
    with pytest.raises(ValueError, match="period_nm has 2 entries for 1 designs"):
        DesignLibrary.from_arrays(np.array([300.0, 400.0]), np.array([[0]]), 150, 150, 100, 100)


# ---------------------------------------------------------------------------------------------
# take / concatenate / index_of
# ---------------------------------------------------------------------------------------------


def test_take_selects_rows_and_keeps_slots() -> None:
    designs = [ONE, TWO, THREE, FOUR]
    lib = DesignLibrary.from_designs(designs)
    sub = lib.take(np.array([3, 0]))
    assert len(sub) == 2
    assert sub.slots == lib.slots
    assert [as_set(d) for d in sub.designs()] == [as_set(FOUR), as_set(ONE)]
    np.testing.assert_array_equal(sub.design_id, [FOUR.design_id, ONE.design_id])
    sl = lib.take(slice(1, 3))
    assert [as_set(d) for d in sl.designs()] == [as_set(TWO), as_set(THREE)]


def test_concatenate_joins_rows_and_pads_slots() -> None:
    a = DesignLibrary.from_designs([ONE])
    b = DesignLibrary.from_designs([THREE, TWO])
    c = DesignLibrary.from_designs([FOUR])
    joined = DesignLibrary.concatenate([a, b, c])
    assert len(joined) == 4
    assert joined.slots == 4
    assert joined.kind.dtype == np.int8
    assert [as_set(d) for d in joined.designs()] == [as_set(d) for d in (ONE, THREE, TWO, FOUR)]
    np.testing.assert_array_equal(joined.present.sum(axis=1), [1, 3, 2, 4])
    # Concatenation equals building the library in one go.
    assert_same_arrays(joined, DesignLibrary.from_designs([ONE, THREE, TWO, FOUR]))


def test_index_of_finds_rows_in_any_order() -> None:
    designs = [ONE, TWO, THREE, FOUR]
    lib = DesignLibrary.from_designs(designs)
    ids = np.array([d.design_id for d in designs], dtype=np.int64)
    np.testing.assert_array_equal(lib.index_of(ids), [0, 1, 2, 3])
    np.testing.assert_array_equal(lib.index_of(ids[[2, 0, 3, 3]]), [2, 0, 3, 3])
    assert lib.index_of(ids[:0]).shape == (0,)


def test_index_of_raises_key_error_naming_the_missing_id() -> None:
    lib = DesignLibrary.from_designs([ONE, TWO, THREE])
    missing = FOUR.design_id
    with pytest.raises(KeyError, match=str(missing)):
        lib.index_of(np.array([ONE.design_id, missing, TWO.design_id], dtype=np.int64))
    # Ids below and above every stored id are both caught.
    lo, hi = int(lib.design_id.min()) - 1, int(lib.design_id.max()) + 1
    for bad in (lo, hi):
        with pytest.raises(KeyError, match=str(bad)):
            lib.index_of(np.array([bad], dtype=np.int64))


def test_index_of_on_empty_library_raises_key_error() -> None:
    empty = DesignLibrary.from_designs([ONE]).take(np.zeros(0, dtype=np.int64))
    assert len(empty) == 0
    with pytest.raises(KeyError, match=str(ONE.design_id)):
        empty.index_of(np.array([ONE.design_id], dtype=np.int64))

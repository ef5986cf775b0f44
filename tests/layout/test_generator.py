"""The seeded generator: determinism, validity (by the checker) and the grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layout.checker import check_library
from layout.design import DesignLibrary, Kind, Primitive
from layout.generator import GeneratorConfig, generate
from layout.rules import DesignRules

ARRAYS = (
    "design_id", "period_nm", "kind", "center_x_nm", "center_y_nm",
    "width_nm", "height_nm", "inner_width_nm", "inner_height_nm",
)  # fmt: skip

N = 600


@pytest.fixture(scope="module")
def lib() -> DesignLibrary:
    return generate(N, seed=7)


def assert_same(a: DesignLibrary, b: DesignLibrary) -> None:
    assert len(a) == len(b)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def on_grid(values: np.ndarray, grid: float) -> np.ndarray:
    q = values / grid
    return np.abs(q - np.rint(q)) < 1e-9


def edges(lib: DesignLibrary) -> list[np.ndarray]:
    """Every outer and hole edge coordinate of every present primitive."""
    m = lib.present
    ring = lib.kind == Kind.RING
    out = []
    for c, size in (("center_x_nm", "width_nm"), ("center_y_nm", "height_nm")):
        centre, half = getattr(lib, c), getattr(lib, size) / 2
        out += [(centre - half)[m], (centre + half)[m]]
    for c, size in (("center_x_nm", "inner_width_nm"), ("center_y_nm", "inner_height_nm")):
        centre, half = getattr(lib, c), getattr(lib, size) / 2
        out += [(centre - half)[ring], (centre + half)[ring]]
    return out


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_libraries(lib: DesignLibrary) -> None:
    assert_same(generate(N, seed=7), lib)


def test_different_seeds_differ(lib: DesignLibrary) -> None:
    other = generate(N, seed=8)
    assert len(other) == N
    # Not just a different order: (almost) no design is shared.
    shared = np.intersect1d(lib.design_id, other.design_id).size
    assert shared < N // 10


def test_smaller_count_is_a_prefix(lib: DesignLibrary) -> None:
    for n in (1, 37, 250):
        assert_same(generate(n, seed=7), lib.take(slice(0, n)))


def test_prefix_across_batches() -> None:
    # With small batches the request needs several batches; still a prefix.
    cfg = GeneratorConfig(batch_size=64)
    big = generate(300, seed=3, config=cfg)
    assert_same(generate(130, seed=3, config=cfg), big.take(slice(0, 130)))


def test_count_is_exact(lib: DesignLibrary) -> None:
    assert len(lib) == N
    assert len(generate(1, seed=0)) == 1


# ---------------------------------------------------------------------------------------------
# What is generated
# ---------------------------------------------------------------------------------------------


def test_design_ids_are_unique(lib: DesignLibrary) -> None:
    assert np.unique(lib.design_id).size == N


def test_design_ids_match_geometry(lib: DesignLibrary) -> None:
    for i in range(0, N, 50):
        assert lib.design(i).design_id == int(lib.design_id[i])


def test_design_ids_unique_when_many_batches_are_needed() -> None:
    # Only one period and small batches: many repeats are drawn and must be dropped.
    cfg = GeneratorConfig(
        periods_nm=(300,), max_primitives=1, kinds=(Kind.RECTANGLE,), batch_size=256
    )
    out = generate(400, seed=1, config=cfg)
    assert np.unique(out.design_id).size == 400


def test_periods(lib: DesignLibrary) -> None:
    assert set(np.unique(lib.period_nm).tolist()) == {300.0, 400.0, 500.0, 600.0}


def test_primitive_counts(lib: DesignLibrary) -> None:
    counts = lib.present.sum(axis=1)
    assert counts.min() >= 1
    assert counts.max() <= 4
    assert set(np.unique(counts).tolist()) == {1, 2, 3, 4}
    # Present slots come first, in canonical form.
    assert (lib.present == (np.arange(lib.slots)[None, :] < counts[:, None])).all()


def test_all_kinds_appear(lib: DesignLibrary) -> None:
    kinds = set(np.unique(lib.kind[lib.present]).tolist())
    assert kinds == {Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING}


def test_centres_and_edges_on_grid(lib: DesignLibrary) -> None:
    m = lib.present
    assert on_grid(lib.center_x_nm[m], 5).all()
    assert on_grid(lib.center_y_nm[m], 5).all()
    for e in edges(lib):
        assert on_grid(e, 5).all()


def test_all_generated_designs_pass(lib: DesignLibrary) -> None:
    report = check_library(lib)
    assert report.passed.all(), [str(v) for v in report.violations()[:5]]


def test_primitives_inside_border_margin(lib: DesignLibrary) -> None:
    # Independent of the checker: every outline keeps 25 nm from the cell border.
    m = lib.present
    p = np.broadcast_to(lib.period_nm[:, None], m.shape)[m]
    lo_x = (lib.center_x_nm - lib.width_nm / 2)[m]
    hi_x = (lib.center_x_nm + lib.width_nm / 2)[m]
    lo_y = (lib.center_y_nm - lib.height_nm / 2)[m]
    hi_y = (lib.center_y_nm + lib.height_nm / 2)[m]
    assert (lo_x >= 25).all()
    assert (lo_y >= 25).all()
    assert (hi_x <= p - 25).all()
    assert (hi_y <= p - 25).all()


def test_config_restricts_kinds_periods_and_counts() -> None:
    cfg = GeneratorConfig(periods_nm=(400,), max_primitives=2, kinds=(Kind.ELLIPSE,))
    out = generate(100, seed=5, config=cfg)
    assert (out.period_nm == 400).all()
    assert set(np.unique(out.kind[out.present]).tolist()) == {Kind.ELLIPSE}
    assert out.present.sum(axis=1).max() <= 2
    assert check_library(out, cfg.rules).passed.all()


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 40))
def test_generated_designs_always_pass_the_checker(seed: int, count: int) -> None:
    out = generate(count, seed)
    assert len(out) == count
    report = check_library(out)
    assert report.passed.all(), [str(v) for v in report.violations()[:5]]


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 40),
    periods=st.lists(
        st.sampled_from([300, 350, 400, 450, 600]), min_size=1, max_size=3, unique=True
    ),
)
def test_coarser_grid_config_passes_and_stays_on_grid(
    seed: int, count: int, periods: list[int]
) -> None:
    rules = DesignRules(grid_nm=10)
    cfg = GeneratorConfig(periods_nm=tuple(sorted(periods)), rules=rules, batch_size=512)
    # 350 and 450 nm are off a 10 nm grid and must be refused.
    if any(p % 10 for p in periods):
        with pytest.raises(ValueError, match="grid"):
            GeneratorConfig(periods_nm=tuple(periods), rules=rules)
        return
    out = generate(count, seed, config=cfg)
    assert len(out) == count
    assert set(np.unique(out.period_nm).tolist()) <= set(map(float, periods))
    report = check_library(out, rules)
    assert report.passed.all(), [str(v) for v in report.violations()[:5]]
    m = out.present
    assert on_grid(out.center_x_nm[m], 10).all()
    assert on_grid(out.center_y_nm[m], 10).all()
    for e in edges(out):
        assert on_grid(e, 10).all()


# ---------------------------------------------------------------------------------------------
# Bad configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"periods_nm": (100,)}, r"period 100 nm"),
        ({"periods_nm": (149,)}, r"period 149 nm"),
        ({"periods_nm": (302,)}, r"period 302 nm"),
        ({"periods_nm": (0,)}, r"period_nm 0 is outside"),
        ({"periods_nm": (-400,)}, r"period_nm -400 is outside"),
        ({"periods_nm": ()}, r"periods_nm"),
        ({"max_primitives": 0}, r"max_primitives 0 is outside the allowed range \[1, 8\]"),
        ({"max_primitives": 9}, r"max_primitives 9 is outside"),
        ({"kinds": ()}, r"kinds=\(\)"),
        ({"kinds": (Kind.EMPTY,)}, r"kinds=.*EMPTY"),
    ],
)
def test_bad_config_raises_naming_the_value(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        GeneratorConfig(**kwargs)  # type: ignore[arg-type]


def test_smallest_period_that_fits_is_accepted() -> None:
    # 100 nm primitive + 2 x 25 nm margins = 150 nm: the only valid design is a centred
    # 100 x 100 rectangle (an ellipse would come within 52.5 nm of its periodic copy).
    cfg = GeneratorConfig(periods_nm=(150,), max_primitives=1)
    (d,) = generate(1, seed=0, config=cfg).designs()
    assert d.period_nm == 150
    assert d.primitives == (Primitive.rectangle(75, 75, 100, 100),)


@pytest.mark.parametrize("count", [0, -3])
def test_bad_count_raises_naming_the_value(count: int) -> None:
    with pytest.raises(ValueError, match=f"count={count}"):
        generate(count, seed=0)


def test_impossible_count_raises() -> None:
    # One period, one rectangle kind, one primitive: only finitely many distinct designs.
    cfg = GeneratorConfig(
        periods_nm=(150,), max_primitives=1, kinds=(Kind.RECTANGLE,), batch_size=16
    )
    with pytest.raises(RuntimeError, match="count=50"):
        generate(50, seed=0, config=cfg)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_batch_size_raises_naming_the_value(batch_size: int) -> None:
    with pytest.raises(ValueError, match=f"batch_size={batch_size}"):
        GeneratorConfig(batch_size=batch_size)

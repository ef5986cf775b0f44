"""2-D affine and similarity fits: exact recovery, noise behaviour, algebra, refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layout.affine import (
    COLLINEAR_RATIO,
    Affine2D,
    fit_affine,
    fit_similarity,
)

# A chip-to-stage-like transform: 0.3 degree rotation, a little anisotropic scale and shear,
# stage coordinates tens of millimetres from the origin.
KNOWN = Affine2D.from_components(
    rotation_deg=0.3, scale=(1.0002, 0.9997), shear=1e-3, offset=(51234.5, -20345.25)
)


def grid_points(n: int = 30, seed: int = 0, extent: float = 5000.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-extent, extent, (n, 2))


def test_recovers_a_known_transform_exactly_from_noise_free_points() -> None:
    source = grid_points()
    fit = fit_affine(source, KNOWN.apply(source))
    np.testing.assert_allclose(fit.transform.matrix, KNOWN.matrix, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.transform.offset, KNOWN.offset, rtol=0, atol=1e-8)
    assert fit.rms_residual < 1e-9 and fit.max_residual < 1e-9
    assert fit.residuals.shape == (30, 2)
    # Three points are enough.
    three = fit_affine(source[:3], KNOWN.apply(source[:3]))
    np.testing.assert_allclose(three.transform.matrix, KNOWN.matrix, rtol=0, atol=1e-10)


def test_similarity_recovers_rotation_scale_and_offset_exactly() -> None:
    truth = Affine2D.from_similarity(2.5, -37.0, (3.0, -4.0))
    source = grid_points(8, seed=1, extent=10.0)
    fit = fit_similarity(source, truth.apply(source))
    assert fit.transform.rotation_deg == pytest.approx(-37.0, abs=1e-10)
    assert fit.transform.scale == pytest.approx((2.5, 2.5), abs=1e-12)
    assert fit.transform.shear == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(fit.transform.offset, [3.0, -4.0], atol=1e-10)
    # Two points determine a similarity, and collinear ones are fine.
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    two = fit_similarity(line, truth.apply(line))
    np.testing.assert_allclose(two.transform.matrix, truth.matrix, atol=1e-12)


def test_rms_residual_matches_the_noise_level() -> None:
    # Isotropic Gaussian noise sigma per coordinate: E|r|^2 = 2 sigma^2 (N - k/2) / N for k
    # fitted parameters (6 affine, 4 similarity), so rms ~ sigma sqrt(2 (N - k/2) / N). With
    # N = 2000 its relative standard error is 1 / sqrt(4 N) ~ 1.1 % (measured over 200 seeds:
    # 1.1 %, worst 3.5 %); 5 % is over four standard errors.
    rng = np.random.default_rng(42)
    sigma, n = 0.05, 2000
    source = grid_points(n, seed=3)
    target = KNOWN.apply(source) + rng.normal(0.0, sigma, (n, 2))
    fit = fit_affine(source, target)
    assert fit.rms_residual == pytest.approx(sigma * math.sqrt(2 * (n - 3) / n), rel=0.05)
    # The matrix is off by about sigma / (extent * sqrt(N)) ~ 2e-7; allow 10x.
    np.testing.assert_allclose(fit.transform.matrix, KNOWN.matrix, rtol=0, atol=2e-6)
    np.testing.assert_allclose(fit.transform.offset, KNOWN.offset, rtol=0, atol=0.02)
    similar = Affine2D.from_similarity(1.0001, 0.2, (10.0, 20.0))
    noisy = similar.apply(source) + rng.normal(0.0, sigma, (n, 2))
    sim = fit_similarity(source, noisy)
    assert sim.rms_residual == pytest.approx(sigma * math.sqrt(2 * (n - 2) / n), rel=0.05)
    assert sim.transform.rotation_deg == pytest.approx(0.2, abs=1e-4)


def test_weights_exclude_an_outlier_but_its_residual_is_reported() -> None:
    source = grid_points(10, seed=4)
    target = KNOWN.apply(source)
    target[7] += (30.0, -40.0)  # a misread fiducial, 50 units off
    plain = fit_affine(source, target)
    assert plain.max_residual > 5
    weights = np.ones(10)
    weights[7] = 0
    robust = fit_affine(source, target, weights=weights)
    np.testing.assert_allclose(robust.transform.matrix, KNOWN.matrix, atol=1e-12)
    assert robust.rms_residual < 1e-9 and robust.max_residual < 1e-9
    assert np.hypot(*robust.residuals[7]) == pytest.approx(50.0, rel=1e-9)
    sim = fit_similarity(source, target, weights=weights)
    assert np.hypot(*sim.residuals[7]) > 40


def test_inverse_compose_and_identity() -> None:
    points = grid_points(5, seed=5)
    back = KNOWN.inverse().apply(KNOWN.apply(points))
    np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)
    loop = KNOWN.compose(KNOWN.inverse())
    np.testing.assert_allclose(loop.matrix, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(loop.offset, 0.0, atol=1e-9)
    other = Affine2D.from_similarity(3.0, 90.0, (1.0, 2.0))
    # compose is self after other.
    np.testing.assert_allclose(
        KNOWN.compose(other).apply(points), KNOWN.apply(other.apply(points)), atol=1e-8
    )
    np.testing.assert_array_equal(Affine2D.identity().apply(points), points)
    # A single point keeps its shape.
    assert other.apply([1.0, 0.0]).tolist() == pytest.approx([1.0, 5.0])


def test_transforms_are_frozen_copies() -> None:
    matrix = np.eye(2)
    t = Affine2D(matrix, np.zeros(2))
    matrix[0, 0] = 5.0
    assert t.matrix[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        t.matrix[0, 0] = 2.0


@pytest.mark.parametrize(
    ("rotation", "scale", "shear"),
    [(0.0, (1.0, 1.0), 0.0), (179.0, (2.0, 0.5), 0.3), (-90.0, (1.5, -2.0), -1.2)],
)
def test_decomposition_round_trips(
    rotation: float, scale: tuple[float, float], shear: float
) -> None:
    t = Affine2D.from_components(rotation, scale, shear, (1.0, 2.0))
    assert t.rotation_deg == pytest.approx(rotation, abs=1e-12)
    assert t.scale == pytest.approx(scale, rel=1e-12)
    assert t.shear == pytest.approx(shear, abs=1e-12)
    assert (t.determinant < 0) == (scale[1] < 0)  # a mirror shows up as sy < 0


angles = st.floats(-179.0, 180.0)
scales = st.floats(1e-3, 1e3)


@settings(max_examples=60, deadline=None)
@given(scale=scales, rotation=angles, dx=st.floats(-1e4, 1e4), dy=st.floats(-1e4, 1e4))
def test_similarity_decomposition_property(
    scale: float, rotation: float, dx: float, dy: float
) -> None:
    t = Affine2D.from_similarity(scale, rotation, (dx, dy))
    assert t.scale == pytest.approx((scale, scale), rel=1e-12)
    assert t.rotation_deg == pytest.approx(rotation, abs=1e-9)
    assert t.shear == pytest.approx(0.0, abs=1e-12)
    points = grid_points(4, seed=6, extent=100.0)
    np.testing.assert_allclose(t.inverse().apply(t.apply(points)), points, rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    rotation=angles,
    sx=scales,
    aspect=st.floats(0.1, 10.0),
    mirror=st.booleans(),
    shear=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_fit_affine_recovers_any_well_conditioned_transform(
    rotation: float, sx: float, aspect: float, mirror: bool, shear: float, seed: int
) -> None:
    sy = sx * aspect  # "well conditioned": the axes' scales within a factor 10 of each other
    truth = Affine2D.from_components(rotation, (sx, -sy if mirror else sy), shear, (7.0, -3.0))
    source = grid_points(6, seed=seed, extent=50.0)
    fit = fit_affine(source, truth.apply(source))
    np.testing.assert_allclose(
        fit.transform.matrix, truth.matrix, rtol=0, atol=1e-9 * np.abs(truth.matrix).max()
    )
    assert fit.transform.shear == pytest.approx(shear, abs=1e-6)


def test_fit_works_far_from_the_origin() -> None:
    # Stage coordinates in nm would be ~1e8; centring keeps the fit exact there too.
    source = grid_points(10, seed=7, extent=100.0) + 1e8
    truth = Affine2D.from_similarity(1.0, 0.01, (-1e8, 5e7))
    fit = fit_affine(source, truth.apply(source))
    assert fit.rms_residual < 1e-6
    np.testing.assert_allclose(fit.transform.matrix, truth.matrix, atol=1e-10)


collinear_line = np.column_stack([np.linspace(0, 100, 5), 2 * np.linspace(0, 100, 5) + 1])
nearly = collinear_line + np.array([[0, 0], [0, 0], [0, 1e-6], [0, 0], [0, 0]])


@pytest.mark.parametrize(
    ("fit", "source", "target", "kwargs", "message"),
    [
        (fit_affine, np.zeros((2, 2)), np.zeros((2, 2)), {}, "at least 3 points"),
        (fit_similarity, np.ones((1, 2)), np.ones((1, 2)), {}, "at least 2 points"),
        (fit_affine, np.zeros((4, 3)), np.zeros((4, 3)), {}, r"shape \(N, 2\), got \(4, 3\)"),
        (fit_affine, np.zeros((4, 2)), np.zeros((5, 2)), {}, r"same shape.*\(4, 2\).*\(5, 2\)"),
        (fit_affine, [[0, 0], [1, 0], [np.nan, 1]], np.zeros((3, 2)), {}, "source .* 1 NaN"),
        (fit_affine, np.eye(3, 2), [[0, 0], [np.inf, 0], [0, 0]], {}, "target .* 1 NaN"),
        (fit_affine, collinear_line, collinear_line, {}, "collinear"),
        (fit_affine, nearly, nearly, {}, f"collinear.*<= {COLLINEAR_RATIO:g}"),
        (fit_affine, np.full((4, 2), 3.0), np.ones((4, 2)), {}, "coincide"),
        (fit_similarity, np.full((4, 2), 3.0), np.ones((4, 2)), {}, "coincide"),
        (fit_similarity, np.eye(2), np.ones((2, 2)), {}, "fitted scale is 0"),
        (fit_affine, np.eye(3, 2), np.eye(3, 2), {"weights": [1, 1]}, r"weights .* \(3,\)"),
        (fit_affine, np.eye(3, 2), np.eye(3, 2), {"weights": [1, -1, 1]}, ">= 0"),
        (fit_affine, np.eye(3, 2), np.eye(3, 2), {"weights": [1, 0, 1]}, "positive weight, got 2"),
    ],
)
def test_bad_inputs_are_one_line_value_errors(
    fit: Any, source: Any, target: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        fit(source, target, **kwargs)
    assert "\n" not in str(info.value)


def test_degenerate_transforms_refuse_inverse_and_decomposition() -> None:
    source = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    flat = fit_affine(source, [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # collinear target
    with pytest.raises(ValueError, match="singular"):
        flat.transform.inverse()
    with pytest.raises(ValueError, match="maps the x axis to a point"):
        _ = Affine2D(np.array([[0.0, 1.0], [0.0, 1.0]]), np.zeros(2)).rotation_deg
    with pytest.raises(ValueError, match=r"matrix must have shape \(2, 2\)"):
        Affine2D(np.eye(3), np.zeros(2))
    with pytest.raises(ValueError, match="offset must be finite"):
        Affine2D(np.eye(2), np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="scale=0"):
        Affine2D.from_similarity(0, 0)
    with pytest.raises(ValueError, match="sy != 0"):
        Affine2D.from_components(scale=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\) or \(2,\)"):
        Affine2D.identity().apply(np.zeros((3, 3)))

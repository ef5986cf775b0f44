"""PSO in the design space: batched over targets, seeded, it climbs towards the target latent
and returns checker-clean designs; measured against a known answer with a transparent encoder."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from layout.checker import check_library
from layout.design import Kind
from layout.design_space import DesignSpace
from layout.raster import rasterize
from layout.rules import DesignRules
from models.objectives import LatentSimilarity, PredictedMSE
from models.optimize import OptimizeConfig, optimize_pso

SPACE = DesignSpace((300, 400, 500), (178.0,), (Kind.RECTANGLE, Kind.ELLIPSE), 2, DesignRules())


def encoder(images: NDArray[np.bool_], params_um: NDArray[np.float64]) -> NDArray[np.float32]:
    """A stand-in for the geometry encoder whose optimum is known: the fill of a 4x4 grid of
    image blocks and the period, centred and normalized."""
    n = images.shape[0]
    blocks = images.reshape(n, 4, 32, 4, 32).mean(axis=(2, 4)).reshape(n, 16)
    z = np.concatenate([blocks - 0.25, params_um[:, :1] - 0.4], axis=1)
    out: NDArray[np.float32] = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    return out


SIMILARITY = LatentSimilarity(encoder)


def test_pso_climbs_to_the_target_and_returns_clean_designs() -> None:
    truth = SPACE.decode(SPACE.random(50, np.random.default_rng(5)))
    picks = np.flatnonzero(truth.feasible)[:3]
    lib = truth.library.take(picks)
    params = np.stack([lib.period_nm, np.full(len(lib), 178.0)], axis=1) / 1000
    queries = encoder(rasterize(lib), params)
    cfg = OptimizeConfig(iterations=12, particles=24, seed=3, targets_per_batch=2)
    result = optimize_pso(SPACE, SIMILARITY, queries, cfg)
    assert result.best_by_iteration.shape == (12, 3)
    assert (np.diff(result.best_by_iteration, axis=0) >= 0).all()  # best so far never drops
    first, last = result.best_by_iteration[0], result.best_by_iteration[-1]
    assert (last > first).all() and (last > 0.9).all(), result.best_by_iteration
    assert np.allclose(result.similarity, last)
    assert ((result.found_at >= 1) & (result.found_at <= 12)).all()
    assert check_library(result.library, SPACE.rules).passed.all()
    # What it returns is what it scored: re-encoding the best designs gives their similarity.
    again = encoder(
        rasterize(result.library),
        np.stack([result.library.period_nm, result.thickness_nm], axis=1) / 1000,
    )
    np.testing.assert_allclose(np.einsum("ne,ne->n", again, queries), result.similarity, atol=1e-5)
    assert result.proposals == 3 * 12 * 24 and result.encoded <= result.proposals
    assert 0 <= result.infeasible_fraction < 0.5
    # Random search in the same box at the same budget does worse on average than the swarm,
    # and what it returns is what it scored, too.
    rand = optimize_pso(SPACE, SIMILARITY, queries, cfg, random_search=True)
    assert rand.proposals == result.proposals
    assert result.similarity.mean() > rand.similarity.mean() + 0.01
    assert check_library(rand.library, SPACE.rules).passed.all()
    z = encoder(
        rasterize(rand.library),
        np.stack([rand.library.period_nm, rand.thickness_nm], axis=1) / 1000,
    )
    np.testing.assert_allclose(np.einsum("ne,ne->n", z, queries), rand.similarity, atol=1e-5)
    # Seeded: the same run again gives the same designs.
    twice = optimize_pso(SPACE, SIMILARITY, queries, cfg)
    np.testing.assert_array_equal(twice.library.design_id, result.library.design_id)


def test_support_distance_and_penalty() -> None:
    from models.optimize import Support, score_candidates

    rng = np.random.default_rng(0)
    refs = rng.standard_normal((500, 17)).astype(np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    support = Support.from_latents(refs, penalty=10.0)
    assert 0 < support.typical_distance < 1
    np.testing.assert_allclose(support.distance(refs[:5]), 0.0, atol=1e-5)
    # Score the same candidates against their own latents as queries (similarity 1), with the
    # support far from them: the penalty takes penalty x the excess distance off.
    x = SPACE.encode(
        SPACE.decode(SPACE.random(20, rng)).library.take(np.arange(5)), np.full(5, 178.0)
    )
    d = SPACE.decode(x)
    lib = d.library
    q = encoder(rasterize(lib), np.stack([lib.period_nm, d.thickness_nm], axis=1) / 1000)
    free = score_candidates(SPACE, SIMILARITY, x, q, -2.0)
    far = Support.from_latents(-q, penalty=10.0)  # every reference opposite a candidate
    held = score_candidates(SPACE, SIMILARITY, x, q, -2.0, far)
    # Without a penalty the distance is not paid for while scoring (it is measured for the
    # best designs only, by support_distance).
    unpaid = score_candidates(SPACE, SIMILARITY, x, q, -2.0, Support.from_latents(-q))
    assert np.isnan(unpaid.distance).all()
    np.testing.assert_allclose(free.similarity, 1.0, atol=1e-5)
    excess = np.maximum(held.distance - far.typical_distance, 0)
    assert (excess > 0).all()
    np.testing.assert_allclose(held.score, 1.0 - 10.0 * excess, atol=1e-5)
    with pytest.raises(ValueError, match="penalty"):
        Support.from_latents(refs, penalty=-1.0)


def test_robust_scores_are_means_over_sampled_fabrications() -> None:
    from layout.fabrication import apply_size_bias
    from models.optimize import Robust, score_candidates

    d = SPACE.decode(SPACE.random(40, np.random.default_rng(2)))
    ok = np.flatnonzero(d.feasible)[:6]
    lib = d.library.take(ok)
    params = np.stack([lib.period_nm, d.thickness_nm[ok]], axis=1) / 1000
    q = encoder(rasterize(lib), params)
    robust = Robust(4, 10.0, np.random.default_rng(5))
    got = robust.mean_score(SIMILARITY, lib, params, q)
    # By hand with the same draws: every sample of every design, dilated and scored.
    bias = np.random.default_rng(5).normal(0.0, 10.0, 6 * 4)
    rows = np.repeat(np.arange(6), 4)
    z = encoder(rasterize(apply_size_bias(lib.take(rows), bias)), params[rows])
    expected = np.einsum("ne,ne->n", z, q[rows]).reshape(6, 4).mean(axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (got < 1.0 - 1e-4).all()  # a dilated design is no longer its own target
    nominal = score_candidates(SPACE, SIMILARITY, SPACE.encode(lib, d.thickness_nm[ok]), q, -2.0)
    np.testing.assert_allclose(nominal.similarity, 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="robust"):
        OptimizeConfig(robust=0)


def fill_spectra(images: NDArray[np.bool_], params_um: NDArray[np.float64]) -> NDArray[np.float32]:
    """A stand-in surrogate whose optimum is known: x transmission falls with the fill of the
    left half, y with the right half's, over 8 bands (each band a quarter of a half's rows)."""
    n = images.shape[0]
    rows = images.reshape(n, 4, 32, 2, 64).mean(axis=(2, 4))  # (n, 4 row bands, 2 halves)
    x, y = 1 - rows[:, :, 0], 1 - rows[:, :, 1]
    out: NDArray[np.float32] = np.stack(
        [np.repeat(x, 2, axis=1), np.repeat(y, 2, axis=1)], axis=1
    ).astype(np.float32)
    return out


def test_pso_on_a_predicted_mse_reaches_a_reachable_spectrum() -> None:
    from dataset.targets_file import weighted_mse

    truth = SPACE.decode(SPACE.random(50, np.random.default_rng(8)))
    lib = truth.library.take(np.flatnonzero(truth.feasible)[:2])
    params = np.stack([lib.period_nm, np.full(len(lib), 178.0)], axis=1) / 1000
    spectra = fill_spectra(rasterize(lib), params)
    weight = np.ones_like(spectra)
    weight[:, 1] = 0.0  # only x counts: a weighted objective, not the plain MSE
    objective = PredictedMSE(fill_spectra)
    queries = PredictedMSE.queries(spectra, weight)
    cfg = OptimizeConfig(iterations=15, particles=24, seed=2, targets_per_batch=2)
    result = optimize_pso(SPACE, objective, queries, cfg)
    mse = -result.best_by_iteration
    assert (np.diff(mse, axis=0) <= 0).all() and (mse[-1] < mse[0]).all()
    got = fill_spectra(
        rasterize(result.library),
        np.stack([result.library.period_nm, result.thickness_nm], axis=1) / 1000,
    )
    exact = weighted_mse(got, spectra, weight)
    np.testing.assert_allclose(-result.similarity, exact, rtol=1e-5)  # what it scored
    assert (exact < 0.01).all(), exact  # close to the target where it is weighted


def test_a_nan_score_is_never_the_best_nor_hides_a_finite_one() -> None:
    def half_broken(
        images: NDArray[np.bool_], params_um: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        z = encoder(images, params_um)
        z[params_um[:, 0] < 0.45] = np.nan  # the network fails on periods 300 and 400
        return z

    truth = SPACE.decode(SPACE.random(50, np.random.default_rng(5)))
    lib = truth.library.take(np.flatnonzero(truth.feasible)[:2])
    params = np.stack([lib.period_nm, np.full(len(lib), 178.0)], axis=1) / 1000
    queries = encoder(rasterize(lib), params)
    cfg = OptimizeConfig(iterations=4, particles=16, seed=1, targets_per_batch=2)
    result = optimize_pso(SPACE, LatentSimilarity(half_broken), queries, cfg)
    assert np.isfinite(result.similarity).all() and np.isfinite(result.best_by_iteration).all()
    assert (result.library.period_nm == 500).all()

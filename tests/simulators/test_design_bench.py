"""The simulated bench as judge of inverse design: its world reproduces the data the model
learned from, and the oracle and random baselines are what they claim to be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataset.chosen_designs_file import ChosenDesigns
from dataset.pairs_file import read_pairs, write_pairs
from dataset.targets_file import Targets, weighted_mse
from dataset.truth_file import design_truth, read_truth, write_truth
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.raster import rasterize
from simulators.design_bench import World, check_world, evaluate_chosen, world_from
from simulators.spectral import AnalyticModel
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth


@pytest.fixture(scope="module")
def clean_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "pairs.h5"
    write_pairs(path, make_pairs(SyntheticPairsConfig(count=120, seed=4, noise=0.0)))
    return path


def test_a_synthetic_world_measures_exactly_what_made_the_pairs(clean_pairs: Path) -> None:
    pairs = read_pairs(clean_pairs)
    world = world_from(clean_pairs)
    lib = generate(120, 4)  # the designs of `sim pairs --count 120 --seed 4`, in its order
    assert np.array_equal(lib.design_id, pairs.design_id)
    assert np.array_equal(rasterize(lib), pairs.geometry)
    measured = world.measure(lib, pairs.params[:, 1] * 1000.0, pairs.wavelength_nm)
    # The pairs are float32 and clipped to [0, 1]; the bench is float64.
    assert np.abs(np.clip(measured, 0, 1) - pairs.spectra).max() < 1e-6
    assert world.mean_bias_nm == 0.0 and world.passband is None
    assert world.material == pairs.material == "a-Si"  # the default film: MOCLIP's


def test_a_truth_world_measures_what_the_virtual_chip_says(tmp_path: Path) -> None:
    """With no pad-to-pad dilation spread, the bench's spectrum of a design is the chip's
    passband-averaged truth of its pads, bias included, relative to the glass."""
    manifest = plan_chip(
        generate(32, seed=9),
        ChipConfig(thickness_nm=178, arrays=1, rows=4, cols=8, replicas=1, companion_size=0),
    )
    fab = FabricationConfig(seed=3, mean_bias_nm=6.0, dilation_sd_nm=0.0)
    truth_path = tmp_path / "truth.h5"
    write_truth(truth_path, make_truth(VirtualChip(manifest, AnalyticModel(), fab)))
    world = world_from(truth_path)
    assert world.mean_bias_nm == 6.0 and world.passband is not None
    assert world.material == manifest.material == "a-Si"
    truth = read_truth(truth_path)
    ids = manifest.designs.design_id
    expected = design_truth(truth, ids)
    lam = truth.band_center_nm
    measured = world.measure(manifest.designs, np.full(len(ids), 178.0), lam)
    assert np.abs(np.clip(measured, 0, 1) - expected).max() < 1e-9
    # And the bias matters: without it the spectra move visibly.
    unbiased = World(**{**world.__dict__, "mean_bias_nm": 0.0}).measure(
        manifest.designs, np.full(len(ids), 178.0), lam
    )
    assert np.abs(unbiased - expected).max() > 1e-3


def test_measured_pairs_do_not_say_how_they_were_measured(
    tmp_path: Path, clean_pairs: Path
) -> None:
    pairs = read_pairs(clean_pairs)
    from dataclasses import replace

    measured = replace(pairs, provenance={"source": "curated"})
    path = tmp_path / "measured.h5"
    write_pairs(path, measured)
    with pytest.raises(ValueError, match="truth file"):
        world_from(path)


def _chosen(
    lib_rows: np.ndarray, sizes: np.ndarray, thickness: np.ndarray, lib, ids
) -> ChosenDesigns:
    return ChosenDesigns(
        library=lib,
        target_id=tuple(ids),
        rank=np.ones(len(ids), dtype=np.int32),
        similarity=np.zeros(len(ids), dtype=np.float32),
        design_row=lib_rows.astype(np.int64),
        thickness_nm=thickness,
        database_size=sizes.astype(np.int64),
        model_identity="x",
        targets_sha256="y",
        material="a-Si",
    )


def test_oracle_is_the_best_probe_and_bounds_every_choice(clean_pairs: Path) -> None:
    pairs = read_pairs(clean_pairs)
    world = world_from(clean_pairs)
    lib = generate(120, 4)
    thick = pairs.params[:, 1] * 1000.0
    spectra = world.measure(lib, thick, pairs.wavelength_nm)
    # Targets: the measured spectra of probes 5 and 70, plus a flat 0.5.
    target_spectra = np.stack([spectra[5], spectra[70], np.full_like(spectra[0], 0.5)])
    targets = Targets.build(target_spectra, pairs.wavelength_nm, target_id=["p5", "p70", "flat"])
    # Choices over the first 50 probes: p5 gets itself, p70 and flat get probe 0.
    chosen = _chosen(
        np.array([5, 0, 0]), np.full(3, 50), thick[[5, 0, 0]], lib, ["p5", "p70", "flat"]
    )
    report = evaluate_chosen(world, chosen, targets, (lib, thick))
    mse = report.per_target_mse
    assert mse[0] < 1e-20  # a probe's own spectrum is matched exactly
    expected = weighted_mse(spectra[[5, 0, 0]], target_spectra, np.ones_like(target_spectra))
    assert np.allclose(mse, expected)
    (row,) = report.sizes
    assert row["database_size"] == 50 and row["targets"] == 3
    # The oracle among the first 50 probes: brute force here.
    brute = np.array(
        [
            min(float(weighted_mse(spectra[j], t, np.ones_like(t))[0]) for j in range(50))
            for t in target_spectra
        ]
    )
    assert row["oracle"]["q50"] == pytest.approx(float(np.median(brute)), rel=1e-9, abs=1e-15)
    assert row["oracle"]["mean"] <= row["model"]["mean"] + 1e-15
    # Probe 70 lies outside the first 50: the oracle cannot reach zero for it.
    assert brute[1] > 0


def test_a_zero_weight_band_does_not_count(clean_pairs: Path) -> None:
    pairs = read_pairs(clean_pairs)
    world = world_from(clean_pairs)
    lib = generate(120, 4)
    thick = pairs.params[:, 1] * 1000.0
    spectra = world.measure(lib.take(np.array([3])), thick[[3]], pairs.wavelength_nm)
    target = spectra.copy()
    target[0, 1] = 0.0  # y is wrong everywhere ...
    weight = np.ones_like(target)
    weight[0, 1] = 0.0  # ... and does not count
    targets = Targets.build(target, pairs.wavelength_nm, weight, ["x-only"])
    chosen = _chosen(np.array([3]), np.array([120]), thick[[3]], lib, ["x-only"])
    report = evaluate_chosen(world, chosen, targets)
    assert report.per_target_mse[0] < 1e-20
    assert "oracle" not in report.sizes[0]


def test_a_world_of_another_film_is_refused(tmp_path: Path, clean_pairs: Path) -> None:
    from dataclasses import replace

    pairs = read_pairs(clean_pairs)
    path = tmp_path / "asih.h5"
    write_pairs(path, replace(pairs, material="a-Si:H"))
    world = world_from(path)
    assert world.material == "a-Si:H"
    lib = generate(3, 4)
    chosen = _chosen(np.arange(3), np.full(3, 3), np.full(3, 178.0), lib, ["a", "b", "c"])
    targets = Targets.build(pairs.spectra[:3].astype(np.float64), pairs.wavelength_nm,
                            target_id=["a", "b", "c"])  # fmt: skip
    message = r"world synthetic pairs .*asih.h5 \(material 'a-Si:H'\) and designs d.h5 \(material"
    with pytest.raises(ValueError, match=message):
        check_world(world, chosen, targets, "d.h5")
    check_world(world_from(clean_pairs), chosen, targets, "d.h5")  # one film: fine
    of_asih = replace(targets, material="a-Si:H")
    with pytest.raises(ValueError, match=r"the targets \(material 'a-Si:H'\) and world"):
        check_world(world_from(clean_pairs), chosen, of_asih, "d.h5")


def test_repeated_fabrications_average_the_measured_mse(clean_pairs: Path) -> None:
    """With a pad-to-pad spread and K fabrications, a design's score is the mean MSE of K
    independently dilated copies; a design's own spectrum is then no longer matched exactly."""
    pairs = read_pairs(clean_pairs)
    base = world_from(clean_pairs)
    lib = generate(120, 4)
    thick = pairs.params[:, 1] * 1000.0
    spectra = base.measure(lib.take(np.array([3, 8])), thick[[3, 8]], pairs.wavelength_nm)
    targets = Targets.build(spectra, pairs.wavelength_nm, target_id=["a", "b"])
    chosen = _chosen(np.array([3, 8]), np.array([120, 120]), thick[[3, 8]], lib, ["a", "b"])
    world = base.with_fabrication(10.0, 4)
    report = evaluate_chosen(world, chosen, targets)
    rows = np.repeat(np.array([3, 8]), 4)
    made = world.measure(lib.take(rows), thick[rows], pairs.wavelength_nm)
    by_hand = weighted_mse(made, spectra[[0, 0, 0, 0, 1, 1, 1, 1]], np.ones_like(made))
    np.testing.assert_allclose(report.per_target_mse, by_hand.reshape(2, 4).mean(axis=1))
    assert (by_hand > 1e-8).all() and np.unique(by_hand).size == 8  # independent draws
    assert world.describe()["fabrications"] == 4 and world.dilation_sd_nm == 10.0
    # Without a spread, repeating the fabrication changes nothing.
    same = evaluate_chosen(base.with_fabrication(None, 3), chosen, targets)
    assert (same.per_target_mse < 1e-20).all()
    with pytest.raises(ValueError, match="fabrications"):
        base.with_fabrication(None, 0)

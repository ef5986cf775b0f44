"""The forward surrogate: the training harness learns it (beating the mean spectrum on held-out
pairs), its directory says what it is and each loader refuses the other kind, and `design
optimize --method surrogate` scores designs by the MSE the surrogate predicts for them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from dataset.chosen_designs_file import read_chosen
from dataset.pairs_file import VAL, read_pairs
from dataset.targets_file import Targets, read_targets, weighted_mse, write_targets
from layout.checker import check_library
from layout.raster import rasterize
from models.config import GeometryEncoderConfig, ModelConfig, SpectraEncoderConfig, get_config
from models.inference import InferenceConfig, predict_geometry, prepare
from models.model_dir import load_model, load_surrogate, model_kind, write_model_dir
from models.surrogate import ForwardSurrogate
from models.train import TrainConfig, TrainResult, train

if TYPE_CHECKING:
    from conftest import Cli

TINY = ModelConfig(
    name="tiny",
    geometry=GeometryEncoderConfig(
        stem="patchify", stem_patch=8, stem_width=16, widths=(16, 32), depths=(1, 1)
    ),
    spectra=SpectraEncoderConfig(hidden=(64,)),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> tuple[Path, TrainResult]:
    out = tmp_path_factory.mktemp("trained") / "surrogate"
    cfg = TrainConfig(epochs=12, batch_size=32, task="surrogate", seed=1)
    return out, train(pairs_h5, out, cfg, progress=False, model_config=TINY)


def test_the_harness_trains_a_surrogate_that_beats_the_mean_spectrum(
    trained: tuple[Path, TrainResult], pairs_h5: Path
) -> None:
    out, result = trained
    assert result.selection == "val_mse" and "val_r1" not in result.history[-1]
    assert model_kind(out) == "surrogate"
    with pytest.raises(ValueError, match="is a surrogate model"):
        load_model(out)
    model = load_surrogate(out)
    pairs = read_pairs(pairs_h5)
    val = np.flatnonzero(pairs.split == VAL)
    with torch.no_grad():
        predicted = model(
            torch.from_numpy(pairs.geometry[val].astype(np.uint8)),
            torch.from_numpy(pairs.params[val].astype(np.float32)),
        ).numpy()
    mse = weighted_mse(predicted, pairs.spectra[val], np.ones_like(pairs.spectra[val]))
    # The selection figure is this MSE of the best checkpoint, which is the one on disk.
    assert float(mse.mean()) == pytest.approx(result.best_value, rel=1e-4)
    best = min(row["val_mse"] for row in result.history)
    assert result.best_value == pytest.approx(best)
    train_rows = np.flatnonzero(pairs.split == 0)
    mean_spectrum = pairs.spectra[train_rows].mean(axis=0)
    baseline = weighted_mse(mean_spectrum, pairs.spectra[val], np.ones_like(pairs.spectra[val]))
    assert result.best_value < 0.7 * float(baseline.mean()), (result.best_value, baseline.mean())
    # A resume must keep the task: a contrastive run is not the continuation of this one.
    with pytest.raises(ValueError, match="task"):
        train(pairs_h5, out, TrainConfig(epochs=13, batch_size=32, seed=1), resume=True,
              progress=False, model_config=TINY)  # fmt: skip


def test_evaluate_frames_the_surrogate_between_the_mean_spectrum_and_the_noise(
    trained: tuple[Path, TrainResult], pairs_h5: Path, truth_h5: Path, tmp_path: Path, cli: Cli
) -> None:
    import json

    out = tmp_path / "eval"
    code, text, err = cli("evaluate", "--model", str(trained[0]), "--pairs", str(pairs_h5),
                          "--truth", str(truth_h5), "--output", str(out))  # fmt: skip
    assert code == 0, err
    assert "surrogate on" in text and "noise floor" in text
    got = json.loads((out / "surrogate_evaluation.json").read_text())
    # The pairs' noise is 0.01 per band: measured against true is 1e-4 on average.
    assert got["noise_floor"]["mean"] == pytest.approx(1e-4, rel=0.2)
    model, mean = got["surrogate_vs_measured"], got["mean_spectrum_vs_measured"]
    assert got["noise_floor"]["q50"] < model["q50"] < mean["q50"]
    # Against the true spectra the noise is gone: about the measured error less the noise.
    assert got["surrogate_vs_true"]["mean"] < model["mean"]
    assert (out / "surrogate_examples.png").stat().st_size > 10_000
    code, _, err = cli("evaluate", "--model", str(trained[0]), "--pairs", str(pairs_h5),
                       "--output", str(out))  # fmt: skip
    assert code != 0 and "--force" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("surrogate")
    torch.manual_seed(0)
    surrogate = ForwardSurrogate(get_config("metascan-small"))
    with torch.no_grad():  # FiLM starts at the identity; make period and thickness matter
        for p in surrogate.parameters():
            if not p.any():
                p.normal_(0.0, 0.3)
    write_model_dir(root / "s", surrogate, material="a-Si")
    from models_data import untrained_model

    write_model_dir(root / "c", untrained_model(0), material="a-Si")
    pairs = read_pairs(pairs_h5)
    rows = np.flatnonzero(pairs.split == VAL)[:5]
    weight = np.ones_like(pairs.spectra[rows], dtype=np.float64)
    weight[:, :, :5] = 0.0  # a band range left out: the weights must reach the objective
    targets = Targets.build(
        pairs.spectra[rows].astype(np.float64),
        pairs.wavelength_nm,
        weight=weight,
        target_id=[f"t{i}" for i in range(rows.size)],
    )
    write_targets(root / "t.h5", targets)
    return {"surrogate": root / "s", "contrastive": root / "c", "targets": root / "t.h5"}


def test_optimize_on_the_surrogate_scores_its_own_predictions(
    dirs: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "opt.h5"
    args = ["design", "optimize", "--model", str(dirs["surrogate"]), "--targets",
            str(dirs["targets"]), "--iterations", "3", "--particles", "6", "--periods", "400,500",
            "--output", str(out), "--no-progress", "--precision", "fp32"]  # fmt: skip
    code, text, err = cli(*args, "--method", "surrogate")
    assert code == 0, err
    assert "median predicted weighted MSE" in text
    chosen = read_chosen(out)
    assert np.isnan(chosen.similarity).all()  # no latent: no cosine to record
    assert "forward surrogate" in chosen.provenance["method"]
    lib = chosen.chosen()
    assert check_library(lib).passed.all()
    targets = read_targets(dirs["targets"])
    model = prepare(load_surrogate(dirs["surrogate"]), InferenceConfig(precision="fp32"))
    params = np.stack([lib.period_nm, chosen.thickness_nm], axis=1) / 1000
    predicted = predict_geometry(model, rasterize(lib), params, InferenceConfig(precision="fp32"))
    mse = weighted_mse(predicted, targets.spectra, targets.weight)
    recorded = np.asarray(chosen.provenance["predicted_weighted_mse"])
    np.testing.assert_allclose(recorded, mse, rtol=1e-4)
    unweighted = weighted_mse(predicted, targets.spectra, np.ones_like(targets.weight))
    assert not np.allclose(recorded, unweighted)  # the targets' weights were used
    history = -np.asarray(chosen.provenance["best_by_iteration"])
    assert (np.diff(history, axis=0) <= 1e-9).all()
    # Gradient refinement through the surrogate never returns a worse design.
    code, _, err = cli(*args, "--method", "surrogate-hybrid", "--steps", "2", "--force")
    assert code == 0, err
    refined = np.asarray(read_chosen(out).provenance["predicted_weighted_mse"])
    assert (refined <= recorded + 1e-6).all()


@pytest.mark.parametrize(
    ("model", "extra", "needle"),
    [
        ("surrogate", ["--method", "pso"], "is a surrogate model"),
        ("contrastive", ["--method", "surrogate"], "is a contrastive model"),
        ("surrogate", ["--method", "surrogate", "--support-penalty", "1"], "latents"),
    ],
)
def test_optimize_refuses_the_wrong_kind_of_model(
    dirs: dict[str, Path], tmp_path: Path, cli: Cli, model: str, extra: list[str], needle: str
) -> None:
    out = tmp_path / "x.h5"
    code, _, err = cli("design", "optimize", "--model", str(dirs[model]), "--targets",
                       str(dirs["targets"]), "--iterations", "1", "--particles", "2",
                       "--output", str(out), "--no-progress", *extra)  # fmt: skip
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err and not out.exists()

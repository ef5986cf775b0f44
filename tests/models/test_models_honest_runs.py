"""A run reports only what happened: divergence stops it naming the step, and a resume
continues the recorded run (same data, same recipe) or says which setting it changed."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from models_data import write_synthetic

import models.train
from dataset.pairs_file import VAL
from dataset.pairs_io import load_pairs
from helpers import TINY
from models.augment import AugmentConfig
from models.model import ContrastiveModel
from models.model_dir import load_model
from models.splits import _Split
from models.tasks import validation_recall
from models.train import Diverged, TrainConfig, train

if TYPE_CHECKING:
    from conftest import Cli

CFG = TrainConfig(epochs=1, batch_size=32)


def _poison_at(monkeypatch: pytest.MonkeyPatch, step: int, loss: float) -> None:
    """From optimizer step ``step`` on, the weights turn NaN and the step returns ``loss``."""
    real_step = models.train.train_step
    calls = [0]

    def step_then_poison(net: torch.nn.Module, *args: Any) -> float:
        calls[0] += 1
        value = real_step(net, *args)
        if calls[0] < step:
            return value
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(float("nan"))
        return loss

    monkeypatch.setattr(models.train, "train_step", step_then_poison)


def test_a_diverging_train_command_fails_naming_the_step(
    tmp_path: Path, pairs_h5: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    # A rate no optimizer survives is refused before any work, like every out-of-range number.
    code, _, err = cli("train", "--pairs", str(pairs_h5), "--output", str(out), "--lr", "1e10")
    assert (
        code == 2 and err.strip() == "error: --lr 10000000000.0 is outside the allowed range (0, 1]"
    )
    assert not out.exists()
    # A run that diverges at an allowed rate stops at the step, with nothing to score.
    _poison_at(monkeypatch, step=2, loss=float("nan"))
    code, stdout, err = cli("train", "--pairs", str(pairs_h5), "--output", str(out),
                            "--epochs", "2", "--batch-size", "32", "--lr", "0.5",
                            "--no-progress")  # fmt: skip
    assert code == 2 and "best val R@1" not in stdout
    assert len(err.strip().splitlines()) == 1
    assert re.fullmatch(
        r"error: training diverged at step 2: loss is nan \(lr [0-9.e+-]+, base --lr 0\.5\); "
        rf"lower --lr and train into a new --output; no model was written to {re.escape(str(out))}",
        err.strip(),
    ), err
    assert not (out / "model.pt").exists()
    stop = json.loads((out / "metrics.json").read_text())["stop"]
    assert stop["reason"] == "diverged" and stop["message"] == err.strip()[len("error: ") :]


def test_divergence_after_a_validation_keeps_only_the_finite_best_checkpoint(
    tmp_path: Path, pairs_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 steps an epoch: epoch 1 validates and writes model.pt, step 6 diverges.
    _poison_at(monkeypatch, step=6, loss=float("nan"))
    out = tmp_path / "run"
    with pytest.raises(Diverged) as info:
        train(pairs_h5, out, replace(CFG, epochs=2), progress=False, model_config=TINY)
    message = str(info.value)
    assert message.startswith("training diverged at step 6: loss is nan (lr ")
    assert message.endswith(
        f"{out / 'model.pt'} is still the best checkpoint before it (epoch 1, val R@1 "
        f"{json.loads((out / 'metrics.json').read_text())['stop']['best_val_r1']:.3f})"
    )
    model = load_model(out)  # finite, so evaluate may score it
    assert all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())
    assert json.loads((out / "config.json").read_text())["train"]["step"] == 5
    assert torch.load(out / "latest.pt", weights_only=True)["global_step"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in metrics["history"]] == [5]
    assert metrics["stop"]["reason"] == "diverged" and metrics["stop"]["step"] == 6


def test_non_finite_weights_stop_the_run_at_validation(
    tmp_path: Path, pairs_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_at(monkeypatch, step=5, loss=1.0)  # a finite loss cannot hide NaN weights
    out = tmp_path / "run"
    with pytest.raises(Diverged, match=r"^training diverged at step 5: weights '.+' are not fin"):
        train(pairs_h5, out, CFG, progress=False, model_config=TINY)
    assert not (out / "model.pt").exists() and not (out / "latest.pt").exists()


def test_validation_refuses_non_finite_embeddings(pairs_h5: Path) -> None:
    model = ContrastiveModel(TINY).eval()
    model.spectra_std.zero_()  # as a zero std that got past every check would
    val = _Split.of(load_pairs(pairs_h5), VAL)
    with pytest.raises(Diverged, match=r"^validation 20 of 20 spectra embeddings are not finite$"):
        validation_recall(model, val, torch.device("cpu"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pairs file, a finished 1-epoch run of the tiny model on it)."""
    folder = tmp_path_factory.mktemp("finished")
    pairs = write_synthetic(folder)
    torch.set_num_threads(1)
    train(pairs, folder / "run", CFG, progress=False, model_config=TINY)
    return pairs, folder / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 16}, "batch_size 32 -> 16"),
        ({"lr": 0.01}, "lr 0.001 -> 0.01"),
        ({"weight_decay": 0.1}, "weight_decay 0.01 -> 0.1"),
        ({"schedule": "moclip"}, "lr 0.001 -> 0.0001, schedule 'cosine' -> 'moclip'"),
        ({"warmup_fraction": 0.2}, "warmup_fraction 0.05 -> 0.2"),
        ({"seed": 1}, "seed 0 -> 1"),
        ({"augment": AugmentConfig(transpose=False)}, "augment.transpose True -> False"),
        ({"gather_with_grad": False}, "gather_with_grad True -> False"),
        ({"model": "moclip"}, "model 'metascan-small' -> 'moclip'"),
    ],
)
def test_resume_refuses_a_change_of_recipe(
    tmp_path: Path, finished: tuple[Path, Path], change: dict[str, Any], message: str
) -> None:
    pairs, run = finished
    run = _copy(run, tmp_path)
    before = (run / "latest.pt").read_bytes()
    with pytest.raises(ValueError) as info:
        train(pairs, run, replace(CFG, **change), True, False, model_config=TINY)
    assert str(info.value) == (
        f"{run / 'latest.pt'}: --resume cannot change {message}; resume with the run's values "
        "or train into a new --output"
    )
    assert (run / "latest.pt").read_bytes() == before


def test_resume_refuses_another_architecture(tmp_path: Path, finished: tuple[Path, Path]) -> None:
    pairs, run = finished
    run = _copy(run, tmp_path)
    with pytest.raises(ValueError, match=r"cannot change architecture\.embed_dim 16 -> 8;"):
        train(pairs, run, CFG, True, False, model_config=replace(TINY, embed_dim=8))


def test_resume_refuses_other_data(tmp_path: Path, finished: tuple[Path, Path]) -> None:
    pairs, run = finished
    run = _copy(run, tmp_path)
    other = write_synthetic(tmp_path, seed=1)
    with pytest.raises(ValueError) as info:
        train(other, run, CFG, True, False, model_config=TINY)
    assert re.fullmatch(
        rf"{re.escape(str(run / 'latest.pt'))}: --resume with other data: the run trained on "
        rf"{re.escape(str(pairs.resolve()))} \(train/val sha256 [0-9a-f]{{12}}\), "
        rf"{re.escape(str(other.resolve()))} holds other pairs \(sha256 [0-9a-f]{{12}}\); "
        r"train into a new --output to change the data",
        str(info.value),
    ), info.value


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 2},
        {"epochs": 2, "patience": 3, "val_every_steps": 2, "time_budget_min": 10.0},
        {"patience": 3},  # nothing left to train: config.json still records the resume
    ],
)
def test_resume_records_what_it_may_change(
    tmp_path: Path, finished: tuple[Path, Path], change: dict[str, Any]
) -> None:
    pairs, run = finished
    run = _copy(run, tmp_path)
    moved = tmp_path / "moved.h5"  # the same pairs under another name are the same data
    shutil.copy(pairs, moved)
    before = json.loads((run / "config.json").read_text())["train"]
    result = train(moved, run, replace(CFG, **change), True, False, model_config=TINY)
    expected = {name: [getattr(CFG, name), value] for name, value in change.items()}
    expected["pairs"] = [str(pairs.resolve()), str(moved.resolve())]
    record = json.loads((run / "config.json").read_text())["train"]
    assert record["resumes"] == [{"step": 5, "changed": expected}]
    assert record["train"] == {**before["train"], **change}
    assert record["data"]["sha256"] == before["data"]["sha256"]
    assert record["data"]["path"] == str(moved.resolve())
    best_step = next(r["step"] for r in result.history if r["epoch"] == result.best_epoch)
    assert record["step"] == best_step  # where model.pt is from (mid-epoch with val_every_steps)
    ckpt = torch.load(run / "latest.pt", weights_only=True)
    assert ckpt["resumes"] == record["resumes"]
    assert ckpt["settings"]["epochs"] == change.get("epochs", 1)
    assert result.steps == 5 * change.get("epochs", 1)


def test_a_checkpoint_without_a_recipe_resumes_unverified(
    tmp_path: Path, finished: tuple[Path, Path]
) -> None:
    pairs, run = finished
    run = _copy(run, tmp_path)
    ckpt = torch.load(run / "latest.pt", weights_only=True)
    for key in ("data", "recipe", "settings", "resumes"):
        del ckpt[key]
    torch.save(ckpt, run / "latest.pt")
    train(pairs, run, replace(CFG, epochs=2), True, False, model_config=TINY)
    record = json.loads((run / "config.json").read_text())["train"]
    assert record["resumes"] == [{"step": 5, "changed": {}, "verified": False}]


def test_the_resume_refusal_is_one_line(tmp_path: Path, pairs_h5: Path, cli: Cli) -> None:
    out = tmp_path / "run"
    args = ("train", "--pairs", str(pairs_h5), "--output", str(out), "--epochs", "1",
            "--no-progress")  # fmt: skip
    assert cli(*args, "--batch-size", "32")[0] == 0
    code, stdout, err = cli(*args, "--batch-size", "64", "--resume")
    assert code == 2 and stdout == ""
    assert err == (
        f"error: {out / 'latest.pt'}: --resume cannot change batch_size 32 -> 64; resume with "
        "the run's values or train into a new --output\n"
    )
    config = json.loads((out / "config.json").read_text())["train"]
    assert config["train"]["batch_size"] == 32 and config["resumes"] == []
    assert np.isclose(config["train"]["base_lr"], 1e-3)

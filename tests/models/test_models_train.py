"""Training end to end: the model directory, learning, reproducibility, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from models.model_dir import load_model
from models.schedule import fit_horizon, lr_multiplier
from models.train import TrainConfig, train

if TYPE_CHECKING:
    from conftest import Cli


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(folder / "latest.pt", weights_only=True)
    state: dict[str, torch.Tensor] = ckpt["model"]
    return state


def test_train_command_writes_a_model_directory_that_beats_chance(
    tmp_path: Path, pairs_h5: Path, cli: Cli
) -> None:
    out = tmp_path / "run"
    code, stdout, err = cli("train", "--pairs", str(pairs_h5), "--output", str(out),
                            "--epochs", "2", "--batch-size", "32", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "trained 2 epochs (10 steps; stopped: all epochs done)" in stdout
    for name in ("model.pt", "config.json", "normalization.json", "metrics.csv",
                 "metrics.json", "latest.pt", "best.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())["history"]
    assert [m["epoch"] for m in metrics] == [1, 2]
    # 20 validation designs: chance R@1 is 0.05.
    assert max(m["val_r1"] for m in metrics) > 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "metascan-small" and config["train"]["train"]["epochs"] == 2
    model = load_model(out)  # from the directory alone
    g = model.encode_geometry(torch.zeros(2, 128, 128), torch.tensor([[0.4, 0.178]] * 2))
    assert g.shape == (2, 64)
    assert model.spectra_mean.abs().sum() > 0  # normalization came back from its JSON


def test_same_seed_gives_the_same_loss_curve(tmp_path: Path, pairs_h5: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=32, seed=5)
    a = train(pairs_h5, tmp_path / "a", cfg, progress=False)
    b = train(pairs_h5, tmp_path / "b", cfg, progress=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for key, value in _weights(tmp_path / "a").items():
        torch.testing.assert_close(_weights(tmp_path / "b")[key], value, rtol=0, atol=0)


def test_resume_mid_epoch_reproduces_an_uninterrupted_run(tmp_path: Path, pairs_h5: Path) -> None:
    # 160 training pairs in batches of 32: 5 steps an epoch, validated after steps 2, 4, 5, ...
    # The crash comes after step 6, so the resumed run starts mid-epoch and crosses an epoch.
    cfg = TrainConfig(epochs=2, batch_size=32, seed=2, val_every_steps=2)
    full = train(pairs_h5, tmp_path / "full", cfg, progress=False)
    assert [r["step"] for r in full.history] == [2, 4, 5, 6, 8, 10]
    assert full.history[0]["epoch"] == pytest.approx(0.4)

    class Crash(Exception):
        pass

    def crash_mid_epoch(epoch: int, row: dict[str, float]) -> None:
        if row["step"] == 6:
            raise Crash

    with pytest.raises(Crash):
        train(pairs_h5, tmp_path / "cut", cfg, progress=False, on_epoch_end=crash_mid_epoch)
    resumed = train(pairs_h5, tmp_path / "cut", cfg, resume=True, progress=False)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    for key, value in _weights(tmp_path / "full").items():
        torch.testing.assert_close(_weights(tmp_path / "cut")[key], value, rtol=0, atol=0)


def test_a_tiny_time_budget_stops_after_one_step_and_says_so(
    tmp_path: Path, pairs_h5: Path, cli: Cli
) -> None:
    out = tmp_path / "run"
    # 0.0001 min is 6 ms: loading the pairs alone takes longer, so the first step passes it.
    code, stdout, err = cli("train", "--pairs", str(pairs_h5), "--output", str(out),
                            "--epochs", "5", "--batch-size", "32", "--no-progress",
                            "--time-budget-min", "0.0001")  # fmt: skip
    assert code == 0, err
    assert "(1 steps; stopped: time budget passed)" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop"]["reason"] == "time_budget"
    assert metrics["stop"]["time_budget_min"] == 0.0001 and metrics["stop"]["step"] == 1
    assert [m["step"] for m in metrics["history"]] == [1]  # validated where it stopped
    assert metrics["history"][0]["epoch"] == pytest.approx(0.2)
    assert (out / "best.pt").is_file() and load_model(out).cfg.name == "metascan-small"
    ckpt = torch.load(out / "latest.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 1)  # a resume continues with batch 2


def test_without_a_budget_the_stop_reason_is_the_epochs(tmp_path: Path, pairs_h5: Path) -> None:
    result = train(pairs_h5, tmp_path / "run", TrainConfig(epochs=1, batch_size=32), progress=False)
    stop = json.loads((tmp_path / "run" / "metrics.json").read_text())["stop"]
    assert result.stop_reason == stop["reason"] == "epochs"
    assert stop["step"] == result.steps == 5 and stop["time_budget_min"] is None


def test_fit_horizon_spends_the_remaining_budget_at_the_measured_rate() -> None:
    # 20 steps in 10 s leaves room for 2 steps a second: 100 s more is 200 steps.
    assert fit_horizon(done=50, run_steps=20, run_s=10.0, remaining_s=100.0, cap=10_000) == 250
    assert fit_horizon(50, 20, 10.0, 100.0, cap=120) == 120  # never past the epochs
    assert fit_horizon(50, 20, 10.0, -5.0, cap=10_000) == 50  # budget gone: stop now
    assert fit_horizon(0, 0, 0.0, 100.0, cap=300) == 300  # no rate yet: the epochs decide


def test_schedules() -> None:
    assert [lr_multiplier("moclip", s, 10, 0) for s in (0, 4, 5, 7, 8, 9)] == [
        1.0, 1.0, 0.5, 0.5, 0.3, 0.3,
    ]  # fmt: skip
    assert lr_multiplier("cosine", 0, 100, 10) == pytest.approx(0.1)
    assert lr_multiplier("cosine", 10, 100, 10) == pytest.approx(1.0)
    assert lr_multiplier("cosine", 99, 100, 10) < 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "missing.h5"], "pairs file missing.h5 does not exist"),
        (["--config", "nope"], "unknown model config 'nope'; known: metascan-small, moclip"),
        (["--epochs", "0"], "--epochs 0 is outside the allowed range [1, 100000]"),
        (["--schedule", "linear"], "schedule 'linear' not in cosine, moclip"),
        (
            ["--time-budget-min", "0"],
            "--time-budget-min 0.0 is outside the allowed range (0, 100000] min",
        ),
        (
            ["--val-every-steps", "-1"],
            "--val-every-steps -1 is outside the allowed range [0, 1000000000]",
        ),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, pairs_h5: Path, cli: Cli, args: list[str], message: str
) -> None:
    base = {"--pairs": str(pairs_h5), "--output": str(tmp_path / "run")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, _, err = cli("train", *[x for kv in base.items() for x in kv], "--no-progress")
    assert code == 2
    assert err.strip() == f"error: {message}"


def test_a_second_run_into_the_same_directory_needs_resume(
    tmp_path: Path, pairs_h5: Path, cli: Cli
) -> None:
    (tmp_path / "run").mkdir()
    code, _, err = cli("train", "--pairs", str(pairs_h5), "--output", str(tmp_path / "run"),
                       "--resume", "--no-progress")  # fmt: skip
    assert code == 2 and "nothing to resume" in err


def test_the_model_records_its_pairs_film_and_resume_keeps_it(
    tmp_path: Path, pairs_h5: Path
) -> None:
    """Another film is refused by name even where the arrays are identical (the data hash
    alone would take them); a checkpoint that never recorded its film is refused too."""
    from dataclasses import replace

    from dataset.pairs_file import read_pairs, write_pairs
    from helpers import TINY
    from models.model_dir import model_material

    cfg = TrainConfig(epochs=1, batch_size=32)
    out = tmp_path / "run"
    train(pairs_h5, out, cfg, progress=False, model_config=TINY)
    assert model_material(out) == "a-Si"
    assert json.loads((out / "config.json").read_text())["material"] == "a-Si"
    asih = tmp_path / "asih.h5"
    write_pairs(asih, replace(read_pairs(pairs_h5), material="a-Si:H"))
    with pytest.raises(ValueError, match=r"--resume pairs .*asih.h5 \(material 'a-Si:H'\) and run"):
        train(asih, out, replace(cfg, epochs=2), resume=True, progress=False, model_config=TINY)
    ckpt = torch.load(out / "latest.pt", weights_only=True)
    del ckpt["data"]["material"]
    torch.save(ckpt, out / "latest.pt")
    with pytest.raises(ValueError, match="written before materials were recorded"):
        train(pairs_h5, out, replace(cfg, epochs=2), resume=True, progress=False, model_config=TINY)
    config = json.loads((out / "config.json").read_text())
    del config["material"]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json\) does not record its film material"):
        load_model(out)

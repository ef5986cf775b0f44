"""Fine-tuning a trained model on newly measured pairs (``metascan train --resume-from RUN``):
it starts from RUN's weights with RUN's normalization, mixes old pairs in at the asked share,
selects on the new pairs while reporting the old ones, refuses what would mix worlds or
overwrite a run, and writes a model directory every loader reads."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from dataset.pairs_file import TRAIN, VAL, read_pairs, write_pairs
from helpers import TINY
from models import train as train_module
from models.augment import AugmentConfig
from models.fine_tune import FineTune, epoch_rows, old_rows_per_epoch
from models.model import Normalization
from models.model_dir import load_model, load_surrogate, model_identity, model_kind
from models.splits import _Split
from models.targets import model_wavelengths_nm
from models.tasks import task_for
from models.train import TrainConfig, train
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs

if TYPE_CHECKING:
    from conftest import Cli

CPU = torch.device("cpu")
RUN_CFG = TrainConfig(epochs=2, batch_size=32, seed=3)
FT_CFG = TrainConfig(epochs=1, batch_size=32, seed=4)


@pytest.fixture(scope="module")
def new_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 newly 'measured' designs of other periods and one thickness: other statistics than
    RUN's 200 training designs (so a refitted normalization would show)."""
    path = tmp_path_factory.mktemp("new") / "new.h5"
    config = SyntheticPairsConfig(
        count=100, seed=7, noise=0.01, thicknesses_nm=(195.0,), periods_nm=(500, 600)
    )
    write_pairs(path, make_pairs(config))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    train(pairs_h5, out, RUN_CFG, progress=False, model_config=TINY)
    return out


@pytest.fixture(scope="module")
def surrogate_dir(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> Path:
    out = tmp_path_factory.mktemp("surrogate") / "surrogate"
    cfg = replace(RUN_CFG, task="surrogate", epochs=1)
    train(pairs_h5, out, cfg, progress=False, model_config=TINY)
    return out


def _state(path: Path) -> dict[str, torch.Tensor]:
    loaded = torch.load(path, weights_only=True)
    state: dict[str, torch.Tensor] = loaded.get("model", loaded)
    return state


def _config(folder: Path) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads((folder / "config.json").read_text())  # type: ignore[type-arg]
    return data


def test_a_fine_tune_starts_from_run_and_keeps_its_normalization(
    tmp_path: Path, run_dir: Path, new_h5: Path, pairs_h5: Path, cli: Cli
) -> None:
    out = tmp_path / "ft"
    at_start: dict[str, dict[str, torch.Tensor]] = {}

    def keep_step_zero(epoch: int, row: dict[str, float]) -> None:
        if row["step"] == 0:
            at_start["latest"] = _state(out / "latest.pt")

    result = train(new_h5, out, FT_CFG, progress=False, on_epoch_end=keep_step_zero,
                   fine_tune=FineTune(run_dir))  # fmt: skip

    # Before its first step the run holds RUN's weights, bit for bit ...
    run_state = _state(run_dir / "model.pt")
    assert at_start["latest"].keys() == run_state.keys()
    for key, value in run_state.items():
        torch.testing.assert_close(at_start["latest"][key], value, rtol=0, atol=0)
    # ... and its step-0 row is RUN's own evaluation, on the new and on the old pairs.
    run_model, task = load_model(run_dir), task_for("contrastive")
    new_pairs, old_pairs = read_pairs(new_h5), read_pairs(pairs_h5)
    on_new = task.validate(run_model, _Split.of(new_pairs, VAL), CPU)
    on_old = task.validate(run_model, _Split.of(old_pairs, VAL), CPU)
    first = result.history[0]
    assert (first["step"], first["epoch"]) == (0, 0)
    assert first["val_r1"] == on_new["val_r1"] and first["val_r5"] == on_new["val_r5"]
    assert first["temperature"] == on_new["temperature"]
    assert first["old_val_r1"] == on_old["val_r1"] and first["old_val_r5"] == on_old["val_r5"]
    assert all("old_val_r1" in row for row in result.history)

    # Training moved the weights.
    final = _state(out / "latest.pt")
    assert any(not torch.equal(final[k], v) for k, v in run_state.items())
    assert result.steps > 0

    # RUN's statistics, not the new pairs': those differ (other periods, one thickness).
    tuned = load_model(out).normalization()
    assert tuned == run_model.normalization()
    assert json.loads((out / "normalization.json").read_text()) == json.loads(
        (run_dir / "normalization.json").read_text()
    )
    train_new = _Split.of(new_pairs, TRAIN)
    refit = Normalization.fit(train_new.params.numpy(), train_new.spectra.numpy())
    assert abs(refit.params_mean[1] - tuned.params_mean[1]) > 0.01
    assert abs(refit.params_mean[0] - tuned.params_mean[0]) > 0.05

    # What config.json records: where it came from, the old pairs, the share, the rate.
    config, run_config = _config(out), _config(run_dir)
    record = config["train"]
    assert record["fine_tuned_from"]["path"] == str(run_dir.resolve())
    assert record["fine_tuned_from"]["model_identity"] == model_identity(run_dir)
    assert record["fine_tuned_from"]["kind"] == "contrastive"
    assert record["old_pairs"]["path"] == str(pairs_h5.resolve())
    assert record["old_pairs"]["sha256"] == run_config["train"]["data"]["sha256"]
    assert record["old_pairs"]["source"] == "run"
    assert record["old_fraction"] == 0.5
    assert record["old_pairs_per_epoch"] == 80  # as many old as the 80 new training pairs
    assert record["train"]["base_lr"] == pytest.approx(
        0.1 * run_config["train"]["train"]["base_lr"]
    )
    assert record["train"]["task"] == "contrastive" and config["model"] == run_config["model"]
    assert model_wavelengths_nm(out).tolist() == new_pairs.wavelength_nm.tolist()

    stop = json.loads((out / "metrics.json").read_text())["stop"]
    assert stop["fine_tune"]["start_val_r1"] == on_new["val_r1"]
    assert stop["fine_tune"]["start_old_val_r1"] == on_old["val_r1"]
    assert stop["fine_tune"]["old_pairs_per_epoch"] == 80
    # A model directory like any other: the evaluate command reads it (metrics.csv included).
    code, stdout, err = cli("evaluate", "--model", str(out), "--pairs", str(new_h5),
                            "--output", str(tmp_path / "ev"))  # fmt: skip
    assert code == 0, err
    assert "spectrum→geometry" in stdout


@pytest.mark.parametrize(
    ("n_new", "n_old", "fraction"),
    [(80, 160, 0.5), (80, 160, 0.25), (80, 1000, 0.9), (7, 50, 0.3), (100, 10, 0.5)],
)
def test_epoch_rows_hold_every_new_row_and_old_ones_at_the_fraction(
    n_new: int, n_old: int, fraction: float
) -> None:
    rows = epoch_rows(n_new, n_old, fraction, seed=1, epoch=0)
    new, old = rows[rows < n_new], rows[rows >= n_new]
    assert new.tolist() == list(range(n_new))
    assert len(np.unique(old)) == len(old) and (old < n_new + n_old).all()
    k = old_rows_per_epoch(n_new, n_old, fraction)
    assert len(old) == k
    if k < n_old:  # the share is F to within one row
        assert abs(k / (n_new + k) - fraction) <= 1 / (n_new + k)
    else:  # too few old pairs: all of them
        assert k == n_old
    # Fresh each epoch, the same for the same (seed, epoch): every rank and a resume agree.
    assert np.array_equal(rows, epoch_rows(n_new, n_old, fraction, seed=1, epoch=0))
    if k < n_old:
        assert not np.array_equal(rows, epoch_rows(n_new, n_old, fraction, seed=1, epoch=1))


def test_fraction_zero_draws_no_old_rows() -> None:
    assert epoch_rows(80, 160, 0.0, seed=1, epoch=3).tolist() == list(range(80))
    assert old_rows_per_epoch(80, 160, 0.0) == 0
    assert old_rows_per_epoch(80, 0, 0.5) == 0
    with pytest.raises(ValueError, match="must be in"):
        old_rows_per_epoch(80, 160, 1.0)


@pytest.mark.parametrize(("fraction", "old_seen"), [(0.5, 80), (0.0, 0)])
def test_an_epoch_trains_on_all_new_pairs_and_the_drawn_old_ones(
    tmp_path: Path,
    run_dir: Path,
    new_h5: Path,
    pairs_h5: Path,
    monkeypatch: pytest.MonkeyPatch,
    fraction: float,
    old_seen: int,
) -> None:
    """Counted in the batches the optimizer steps on (augmentation off, so each spectrum is
    recognizably a row of one of the files)."""
    new_rows = {s.tobytes() for s in _Split.of(read_pairs(new_h5), TRAIN).spectra.numpy()}
    old_rows = {s.tobytes() for s in _Split.of(read_pairs(pairs_h5), TRAIN).spectra.numpy()}
    seen: list[bytes] = []
    step = train_module.train_step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(s.tobytes() for s in args[5].numpy())
        return step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", spy)
    cfg = replace(FT_CFG, augment=AugmentConfig(circular_shift=False, transpose=False))
    result = train(new_h5, tmp_path / "ft", cfg, progress=False,
                   fine_tune=FineTune(run_dir, old_fraction=fraction))  # fmt: skip
    # 80 new training pairs, batch 32: F = 0.5 adds 80 old ones (5 full steps), F = 0 none
    # (2 steps, the last 16 new pairs dropped by the whole-batch rule).
    assert result.steps == (5 if fraction else 2)
    assert sum(s in old_rows for s in seen) == old_seen
    assert sum(s in new_rows for s in seen) == (80 if fraction else 64)
    assert len(set(seen)) == len(seen)  # no row twice in an epoch
    # F = 0 still reports the old validation figure: forgetting stays visible.
    assert "old_val_r1" in result.history[-1]


def test_a_surrogate_run_fine_tunes_as_a_surrogate(
    tmp_path: Path, surrogate_dir: Path, new_h5: Path, pairs_h5: Path, cli: Cli
) -> None:
    out = tmp_path / "ft"
    code, stdout, err = cli("train", "--resume-from", str(surrogate_dir), "--pairs", str(new_h5),
                            "--output", str(out), "--epochs", "1", "--batch-size", "32",
                            "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "best val MSE" in stdout and f"fine-tuned from {surrogate_dir}" in stdout
    assert model_kind(out) == "surrogate"
    load_surrogate(out)
    with pytest.raises(ValueError, match="is a surrogate model"):
        load_model(out)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert "val_r1" not in history[0] and {"val_mse", "old_val_mse"} <= set(history[0])
    # The step-0 figure is RUN's own validation MSE on the new pairs.
    on_new = task_for("surrogate").validate(
        load_surrogate(surrogate_dir), _Split.of(read_pairs(new_h5), VAL), CPU
    )
    assert history[0]["val_mse"] == on_new["val_mse"]
    assert _config(out)["train"]["fine_tuned_from"]["kind"] == "surrogate"
    # The evaluate command reads it as any surrogate directory.
    code, stdout, err = cli("evaluate", "--model", str(out), "--pairs", str(new_h5),
                            "--output", str(tmp_path / "ev"))  # fmt: skip
    assert code == 0, err
    assert "surrogate on" in stdout
    # The loop's next round: its old pairs default to round 1's own (the new file), and its
    # rate stays a tenth of the first recipe's rather than shrinking tenfold a round.
    again = tmp_path / "round2"
    code, _, err = cli("train", "--resume-from", str(out), "--pairs", str(pairs_h5),
                       "--output", str(again), "--epochs", "1", "--batch-size", "32",
                       "--no-progress")  # fmt: skip
    assert code == 0, err
    record, first = _config(again)["train"], _config(surrogate_dir)["train"]
    assert record["old_pairs"]["path"] == str(new_h5.resolve())
    assert record["train"]["base_lr"] == pytest.approx(0.1 * first["train"]["base_lr"])
    assert record["fine_tuned_from"]["model_identity"] == model_identity(out)


def test_resuming_a_fine_tune_continues_it_bit_for_bit(
    tmp_path: Path, run_dir: Path, new_h5: Path, cli: Cli
) -> None:
    cfg = replace(FT_CFG, epochs=2, val_every_steps=2)
    full = train(new_h5, tmp_path / "full", cfg, progress=False, fine_tune=FineTune(run_dir))

    class Crash(Exception):
        pass

    def crash(epoch: int, row: dict[str, float]) -> None:
        if row["step"] == 4:
            raise Crash

    cut = tmp_path / "cut"
    with pytest.raises(Crash):
        train(new_h5, cut, cfg, progress=False, on_epoch_end=crash, fine_tune=FineTune(run_dir))
    # Resumed from the command line with no fine-tune options: latest.pt knows them.
    code, _, err = cli("train", "--resume", "--pairs", str(new_h5), "--output", str(cut),
                       "--epochs", "2", "--batch-size", "32", "--seed", "4",
                       "--val-every-steps", "2", "--no-progress")  # fmt: skip
    assert code == 0, err
    history = json.loads((cut / "metrics.json").read_text())["history"]
    assert [r["step"] for r in history] == [r["step"] for r in full.history]
    assert [r.get("train_loss") for r in history[1:]] == [
        r.get("train_loss") for r in full.history[1:]
    ]
    for key, value in _state(tmp_path / "full" / "latest.pt").items():
        torch.testing.assert_close(_state(cut / "latest.pt")[key], value, rtol=0, atol=0)
    config = _config(cut)["train"]
    assert config["fine_tuned_from"]["path"] == str(run_dir.resolve())
    assert config["resumes"] and config["resumes"][0]["step"] == 4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("gone", "are gone: no old pairs"),
        ("changed", "no longer hold the pairs RUN trained on"),
    ],
    ids=["gone", "changed"],
)
def test_without_run_s_own_pairs_no_old_pairs_are_mixed_and_the_log_says_so(
    tmp_path: Path,
    run_dir: Path,
    new_h5: Path,
    caplog: pytest.LogCaptureFixture,
    edit: str,
    message: str,
) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = _config(run)
    if edit == "gone":
        config["train"]["data"]["path"] = str(tmp_path / "moved.h5")
    else:
        config["train"]["data"]["sha256"] = "0" * 64
    (run / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="models.fine_tune"):
        result = train(new_h5, tmp_path / "ft", FT_CFG, progress=False, fine_tune=FineTune(run))
    assert message in caplog.text
    assert _config(tmp_path / "ft")["train"]["old_pairs"] is None
    assert result.steps == 2 and "old_val_r1" not in result.history[0]


def _variant(src: Path, dst: Path, kind: str) -> Path:
    pairs = read_pairs(src)
    if kind == "film":
        pairs = replace(pairs, material="a-Si:H")
    elif kind == "grid":
        pairs = replace(pairs, wavelength_nm=pairs.wavelength_nm + 2.0)
    elif kind == "nm":
        params = pairs.params.copy()
        params[:, 1] *= 1000.0  # thickness in nm where contract 5 says um
        pairs = replace(pairs, params=params)
    write_pairs(dst, pairs)
    return dst


REFUSALS = [
    ("output is run", "is the input --resume-from"),
    ("output is a run", "already holds a run (latest.pt); a fine-tune writes a new model"),
    ("film", "(material 'a-Si:H') and --resume-from {run} (config.json) (material 'a-Si')"),
    ("grid", "is on another wavelength grid than --resume-from {run} (band 0: 452 nm"),
    ("nm", "median thickness 195 is 1.11e+03x the 0.1757 µm mean --resume-from {run} was"),
    ("old film", "--old-pairs {w}/old.h5 (material 'a-Si:H') and --resume-from"),
    ("resume too", "with --resume: --resume continues the run in --output"),
    ("not a model", "--resume-from {w}/empty is not a model directory (no config.json)"),
    ("config", "--config metascan-small is not the architecture of --resume-from {run}"),
    ("task", "--task surrogate: --resume-from {run} is a contrastive model"),
    ("fraction 1", "--old-fraction 1.0 is outside the allowed range [0, 1)"),
    ("old pairs alone", "--old-pairs goes with --resume-from RUN"),
    ("old is new", "--old-pairs {new} is the --pairs file"),
]


@pytest.mark.parametrize(("case", "message"), REFUSALS, ids=[case for case, _ in REFUSALS])
def test_refusals_are_one_line(
    tmp_path: Path,
    run_dir: Path,
    surrogate_dir: Path,
    new_h5: Path,
    cli: Cli,
    case: str,
    message: str,
) -> None:
    out, pairs = tmp_path / "ft", new_h5
    extra: list[str] = []
    resume_from: Path | None = run_dir
    if case == "output is run":
        out = run_dir
    elif case == "output is a run":
        out = surrogate_dir
    elif case in ("film", "grid", "nm"):
        pairs = _variant(new_h5, tmp_path / "new.h5", case)
    elif case == "old film":
        extra = ["--old-pairs", str(_variant(new_h5, tmp_path / "old.h5", "film"))]
    elif case == "resume too":
        extra = ["--resume"]
    elif case == "not a model":
        resume_from = tmp_path / "empty"
        resume_from.mkdir()
    elif case == "config":
        extra = ["--config", "metascan-small"]
    elif case == "task":
        extra = ["--task", "surrogate"]
    elif case == "fraction 1":
        extra = ["--old-fraction", "1"]
    elif case == "old pairs alone":
        resume_from, extra = None, ["--old-pairs", str(new_h5)]
    elif case == "old is new":
        extra = ["--old-pairs", str(new_h5)]
    before = sorted(p.name for p in run_dir.iterdir())
    args = ["train", "--pairs", str(pairs), "--output", str(out), "--no-progress", *extra]
    if resume_from is not None:
        args += ["--resume-from", str(resume_from)]
    code, _, err = cli(*args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    expected = message.format(run=run_dir, w=tmp_path, new=new_h5)
    assert expected in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before  # RUN untouched
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").iterdir())

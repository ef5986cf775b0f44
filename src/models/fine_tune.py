"""Fine-tuning a trained model on newly measured pairs (``metascan train --resume-from RUN``).

The active-learning loop's step after designs proposed by RUN were fabricated and measured:
the new pairs cover what RUN got wrong, and a fine-tune teaches them to RUN's network without
losing what it already knew. This module decides where such a run starts and what it trains
on; :func:`models.train.train` runs it like any other run.

- **RUN's best weights** (its ``model.pt``), with RUN's architecture and task: a fine-tune
  continues RUN's network, so a ``--config`` or ``--task`` naming others is refused
  (:func:`check_fine_tune_choices`).
- **RUN's normalization**, not refitted on the new pairs: the first layers learned on inputs
  standardized by RUN's statistics, so refitting would shift every input the weights see and,
  for a contrastive model, move the latent space every probe database, target encoding and
  design choice downstream lives in (:class:`FineTune` says more).
- **A fresh optimizer, schedule and step count** (AdamW's moments belong to RUN's last steps on
  other data), at :data:`FINE_TUNE_LR_FRACTION` (0.1) of the recipe's rate: the full rate
  through a fresh warmup would move good weights as far as a new run's random ones.
- **Old pairs mixed in at a fraction**: each epoch is the new pairs' whole train split plus a
  fresh seeded draw of old pairs (:func:`epoch_rows`, :func:`old_rows_per_epoch`), RUN's own
  training pairs unless ``--old-pairs`` names others, so that what RUN knew is rehearsed while
  the new pairs are learned.
- **Selection on the new pairs' validation split**; every validation row also scores the old
  file's validation split (``old_val_*``), so forgetting shows in ``metrics.json``. Before its
  first step a fine-tune validates RUN's own weights (the step-0 row): the starting point of
  both figures, and a candidate for the best model, so a fine-tune that only made things worse
  on the new pairs leaves RUN's weights as its ``model.pt`` rather than a worse model.

Pairs the fine-tuned model cannot read as RUN read its own (another film, band grid, image
size, or unit convention for period and thickness) are refused, and so is an ``--output`` that
would continue or overwrite a run. ``--resume`` of a fine-tune's own output continues it from
what its ``latest.pt`` recorded (:func:`_resume_fine_tune`), its old pairs included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch import Tensor

from common.outputs import same_file
from dataset.pairs_file import TRAIN, VAL, Pairs
from dataset.pairs_io import load_pairs
from layout import material as film
from models.checkpoint import data_identity
from models.config import ModelConfig, get_config
from models.model import Normalization
from models.model_dir import (
    CONFIG_FILE,
    CONTRASTIVE,
    LATEST_FILE,
    load_model,
    load_surrogate,
    model_identity,
    model_kind,
    model_material,
    read_config,
)
from models.splits import _Split
from models.targets import pairs_wavelengths_nm

__all__ = [
    "DEFAULT_OLD_FRACTION",
    "FINE_TUNE_LR_FRACTION",
    "FineTune",
    "check_fine_tune_choices",
    "epoch_rows",
    "fine_tune_of",
    "old_rows_per_epoch",
]

log = logging.getLogger(__name__)

# A fine-tune's default rate, as a fraction of the recipe's (FineTune's docstring says why).
FINE_TUNE_LR_FRACTION = 0.1
DEFAULT_OLD_FRACTION = 0.5
# New pairs whose median period or thickness is this far (as a factor) from the mean RUN was
# trained on are taken for another unit convention (nm for µm), not for a new regime.
PARAMS_FACTOR_LIMIT = 10.0
_OLD_DRAW_STREAM = 0x01D  # keys the old-pairs draw apart from every other seeded stream


@dataclass(frozen=True)
class FineTune:
    """Where a fine-tuning run starts (``metascan train --resume-from RUN``).

    The run takes RUN's best weights, architecture, task and normalization. The normalization
    is RUN's, not refitted on the new pairs: the network's first layers learned on inputs
    standardized by those statistics, so refitting them would shift every input the weights
    see (a new mean is a bias on every band) and undo part of what RUN learned before the first
    step; for a contrastive model it would also move the latent space, and every probe
    database, target encoding and design choice downstream is a point of RUN's space. With
    RUN's statistics a spectrum means to the fine-tuned model what it meant to RUN.

    The optimizer, schedule and step counters start fresh (AdamW's moments belong to RUN's
    last steps on other data). The rate defaults to ``FINE_TUNE_LR_FRACTION`` (0.1) of the
    recipe's ``base_lr`` (RUN's own, or for a fine-tune of a fine-tune the first recipe's, so
    rounds of the loop do not shrink it tenfold each): the full rate through a fresh warmup
    would move weights that are already good as far as a new run's random ones and forget
    what the new pairs do not cover; a tenth is the usual fine-tuning step.

    ``old_pairs`` None means RUN's own training pairs, where ``config.json`` records them and
    the file still holds the same pairs (the sha256 of its train and validation splits);
    otherwise none, said in the log. ``old_fraction`` is the share of old pairs in each epoch
    (:func:`old_rows_per_epoch`), in [0, 1): 0 mixes none in (the old validation figure is
    still reported), 1 would leave no room for the new pairs.
    """

    run: Path
    old_pairs: Path | None = None
    old_fraction: float = DEFAULT_OLD_FRACTION

    def __post_init__(self) -> None:
        f = self.old_fraction
        if isinstance(f, bool) or not (isinstance(f, int | float) and math.isfinite(f)):
            raise ValueError(f"old-fraction {f!r} must be a finite number in [0, 1)")
        if not 0 <= f < 1:
            raise ValueError(f"old-fraction {f!r} is outside the allowed range [0, 1)")


def old_rows_per_epoch(n_new: int, n_old: int, fraction: float) -> int:
    """How many old pairs join an epoch of ``n_new`` new ones so that they are ``fraction`` of
    it: k / (n_new + k) = F, k = round(F n_new / (1 - F)), at most the ``n_old`` there are
    (then the share is smaller; the caller logs it)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"old fraction {fraction} must be in [0, 1)")
    if n_old <= 0 or fraction == 0:
        return 0
    return min(n_old, round(fraction * n_new / (1 - fraction)))


def epoch_rows(n_new: int, n_old: int, fraction: float, seed: int, epoch: int) -> NDArray[np.int64]:
    """The rows of epoch ``epoch``'s training set in a pool of ``n_new`` new rows followed by
    ``n_old`` old ones: every new row, then :func:`old_rows_per_epoch` old rows drawn without
    replacement, fresh each epoch (so over the epochs the old pairs are all rehearsed, not one
    fixed subset), from a generator keyed by (seed, epoch) alone: every rank draws the same
    rows, and a resumed run the rows an uninterrupted one would have. The sampler shuffles the
    returned rows; without old pairs they are ``arange(n_new)``, what a plain run trains on."""
    new = np.arange(n_new, dtype=np.int64)
    k = old_rows_per_epoch(n_new, n_old, fraction)
    if k == 0:
        return new
    rng = np.random.default_rng([seed % 2**63, epoch, _OLD_DRAW_STREAM])
    old = n_new + np.sort(rng.choice(n_old, size=k, replace=False)).astype(np.int64)
    return np.concatenate([new, old])


def _pairs_identity(path: Path, pairs: Pairs) -> dict[str, str]:
    """The identity a run records for its pairs (``data_identity`` of train and validation,
    as the run holds them), so an old pairs file is recognized as RUN's training data."""
    return data_identity(path, (_Split.of(pairs, TRAIN).arrays(), _Split.of(pairs, VAL).arrays()))


def _recorded_grid(config: dict[str, Any]) -> NDArray[np.float64] | None:
    """The band grid a model directory's ``config.json`` says it was trained on: recorded by
    this version (``train.wavelength_nm``), else read from its training pairs file while that
    still holds the same pairs; None when neither is known."""
    train_record = config.get("train", {})
    if not isinstance(train_record, dict):
        return None
    grid = train_record.get("wavelength_nm")
    if isinstance(grid, list):
        return np.asarray(grid, dtype=np.float64)
    data = train_record.get("data")
    name = data.get("path") if isinstance(data, dict) else train_record.get("pairs")
    if isinstance(name, str) and Path(name).is_file():
        return pairs_wavelengths_nm(Path(name))
    return None


def fine_tune_of(folder: Path) -> dict[str, Any] | None:
    """What ``config.json`` in ``folder`` records of the run a fine-tune started from
    (``train.fine_tuned_from``), or None for a plain run or no model directory."""
    try:
        config = read_config(Path(folder))
    except (OSError, ValueError):
        return None
    record = config.get("train", {}).get("fine_tuned_from")
    return record if isinstance(record, dict) else None


def check_fine_tune_choices(
    folder: Path, what: str, config: str | None, task: str | None
) -> tuple[str, str]:
    """The task and architecture name of the model in ``folder`` (``what`` says how the user
    named it), refusing a ``--config`` or ``--task`` that names others: a fine-tune continues
    RUN's network, so its architecture and task are RUN's and only an agreeing choice is
    accepted (a disagreeing one would be silently ignored otherwise)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{what} {folder} is not a model directory (no {CONFIG_FILE})")
    kind = model_kind(folder)
    arch = ModelConfig.from_dict(read_config(folder)["model"])
    if task is not None and task != kind:
        raise ValueError(
            f"--task {task}: {what} {folder} is a {kind} model and a fine-tune keeps its task; "
            "leave --task out"
        )
    if config is not None:
        named = replace(get_config(config), num_wavelengths=arch.num_wavelengths)
        if named != arch:
            raise ValueError(
                f"--config {config} is not the architecture of {what} {folder} "
                f"({arch.name!r}); a fine-tune keeps RUN's architecture: leave --config out"
            )
    return kind, arch.name


@dataclass
class _FineTuneStart:
    """A fine-tune's inputs besides the new pairs, resolved: from RUN at the start, from
    ``latest.pt`` on ``--resume``; ``record`` is what the checkpoint keeps of it."""

    kind: str
    arch: ModelConfig
    norm: Normalization
    lr: float  # the default rate, when --lr is not given
    material: str
    grid: NDArray[np.float64] | None  # RUN's band grid, where known
    record: dict[str, Any]
    run_source: str  # how the messages name the run the model comes from
    weights: dict[str, Tensor] | None = None  # RUN's; None on resume (latest.pt holds them)
    old_train: _Split | None = None
    old_val: _Split | None = None

    def check_pairs(self, pairs: Pairs, source: str) -> None:
        """Refuse pairs the fine-tuned model cannot read as RUN read its own: another film,
        another band grid, or period and thickness in another unit convention."""
        film_source = f"{self.run_source} ({CONFIG_FILE})"
        film.require(pairs.material, source, self.material, film_source)
        bands = int(pairs.spectra.shape[2])
        if bands != self.arch.num_wavelengths:
            raise ValueError(
                f"{source} holds {bands} bands but {self.run_source} takes "
                f"{self.arch.num_wavelengths}; a fine-tune needs pairs on RUN's band grid"
            )
        off = (
            np.flatnonzero(~np.isclose(pairs.wavelength_nm, self.grid, rtol=0, atol=1e-6))
            if self.grid is not None and self.grid.shape == pairs.wavelength_nm.shape
            else np.empty(0, dtype=np.int64)
        )
        if self.grid is not None and off.size:
            i = int(off[0])
            raise ValueError(
                f"{source} is on another wavelength grid than {self.run_source} (band {i}: "
                f"{pairs.wavelength_nm[i]:g} nm, RUN's {self.grid[i]:g} nm); a fine-tune needs "
                "pairs on RUN's band grid"
            )
        if pairs.geometry.shape[1] != self.arch.image_size:
            raise ValueError(
                f"{source}: geometry is {pairs.geometry.shape[1]} px, {self.run_source} "
                f"expects {self.arch.image_size}"
            )
        for column, name in enumerate(("period", "thickness")):
            typical = float(np.median(pairs.params[:, column]))
            trained = float(self.norm.params_mean[column])
            if trained > 0 and not (
                1 / PARAMS_FACTOR_LIMIT <= typical / trained <= PARAMS_FACTOR_LIMIT
            ):
                raise ValueError(
                    f"{source}: median {name} {typical:g} is {typical / trained:.3g}x the "
                    f"{trained:.4g} µm mean {self.run_source} was trained on: another {name} "
                    "convention (params must be in µm, contract 5); convert the pairs file"
                )


def _check_fine_tune_output(spec: FineTune, output: Path, resume: bool) -> None:
    """Refuse, before any reading, a fine-tune that would continue or overwrite a run."""
    if resume:
        raise ValueError(
            f"--resume-from {spec.run} with --resume: --resume continues the run in --output, "
            "--resume-from starts a new one from RUN; give one of them"
        )
    if same_file(output, spec.run):
        raise ValueError(
            f"--output {output} is --resume-from {spec.run}: a fine-tune never overwrites the "
            "run it starts from; give a new --output"
        )
    for name in (LATEST_FILE, CONFIG_FILE):
        if (output / name).exists():
            raise FileExistsError(
                f"--output {output} already holds a run ({name}); a fine-tune writes a new "
                "model directory: give a new --output"
            )


def _start_fine_tune(
    spec: FineTune,
    pairs_path: Path,
    schedule: str,
    schedule_lr: float,
    model_config: ModelConfig | None,
) -> _FineTuneStart:
    """RUN's weights, architecture, task, normalization and band grid, and the old pairs.

    ``schedule_lr`` is the default rate of ``schedule`` (``TrainConfig.base_lr`` without
    ``--lr``): the recipe's rate when RUN records none."""
    run = Path(spec.run)
    source = f"--resume-from {run}"
    if not (run / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{source} is not a model directory (no {CONFIG_FILE})")
    config = read_config(run)
    kind = model_kind(run)
    model = load_model(run) if kind == CONTRASTIVE else load_surrogate(run)
    arch = model.cfg
    if (
        model_config is not None
        and replace(model_config, num_wavelengths=arch.num_wavelengths) != arch
    ):
        raise ValueError(
            f"architecture {model_config.name!r} is not that of {source} ({arch.name!r}); a "
            "fine-tune keeps RUN's architecture"
        )
    run_train = config.get("train", {})
    run_train = run_train if isinstance(run_train, dict) else {}
    recipe, earlier = run_train.get("train", {}), run_train.get("fine_tuned_from", {})
    recipe_lr = earlier.get("recipe_lr") if isinstance(earlier, dict) else None
    if recipe_lr is None and isinstance(recipe, dict):
        recipe_lr = recipe.get("base_lr")
    if recipe_lr is None:
        recipe_lr = schedule_lr
        log.warning("%s records no learning rate: taking the %s default %g", source,
                    schedule, recipe_lr)  # fmt: skip
    grid = _recorded_grid(config)
    if grid is None:
        log.warning("%s records no band grid: only its number of bands is checked", source)
    norm = model.normalization()
    material = model_material(run)
    record: dict[str, Any] = {
        "from": {
            "path": str(run.resolve()),
            "model_identity": model_identity(run),
            "kind": kind,
            "step": run_train.get("step"),
            "data": run_train.get("data"),
            "recipe_lr": float(recipe_lr),
        },
        "lr": FINE_TUNE_LR_FRACTION * float(recipe_lr),
        "material": material,
        "old_pairs": None,
        "old_fraction": float(spec.old_fraction),
        "old_pairs_per_epoch": 0,
        "wavelength_nm": None if grid is None else [float(w) for w in grid],
        "normalization": norm.to_dict(),
        "architecture": arch.to_dict(),
    }
    start = _FineTuneStart(
        kind, arch, norm, record["lr"], material, grid, record, source,
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
    )  # fmt: skip
    _add_old_pairs(start, spec, run_train, Path(pairs_path))
    return start


def _add_old_pairs(
    start: _FineTuneStart, spec: FineTune, run_train: dict[str, Any], new_path: Path
) -> None:
    """Resolve and load the old pairs (``FineTune``'s docstring says which) into ``start``."""
    source = start.run_source
    if spec.old_pairs is not None:
        path, label, expected = Path(spec.old_pairs), f"--old-pairs {spec.old_pairs}", None
        if same_file(path, new_path):
            raise ValueError(
                f"--old-pairs {path} is the --pairs file: old and new pairs must be two files"
            )
    else:
        data = run_train.get("data")
        name = data.get("path") if isinstance(data, dict) else None
        expected = data.get("sha256") if isinstance(data, dict) else None
        if not isinstance(name, str) or not isinstance(expected, str):
            log.warning("%s records no training pairs: no old pairs (give --old-pairs)", source)
            return
        path, label = Path(name), f"{source}'s training pairs {name}"
        if not path.is_file():
            log.warning("%s are gone: no old pairs (give --old-pairs)", label)
            return
        if same_file(path, new_path):
            log.warning("%s are the --pairs file: no old pairs", label)
            return
    pairs = load_pairs(path)
    identity = _pairs_identity(path, pairs)
    if expected is not None and identity["sha256"] != expected:
        log.warning(
            "%s no longer hold the pairs RUN trained on (sha256 %s, recorded %s): no old pairs "
            "(give --old-pairs to mix them in anyway)",
            label, identity["sha256"][:12], expected[:12],
        )  # fmt: skip
        return
    start.check_pairs(pairs, label)
    start.old_train, start.old_val = _Split.of(pairs, TRAIN), _Split.of(pairs, VAL)
    start.record["old_pairs"] = {
        **identity,
        "material": pairs.material,
        "source": "--old-pairs" if spec.old_pairs is not None else "run",
    }
    if spec.old_fraction == 0:
        log.info("old pairs %s: validation figure only (--old-fraction 0)", path)


def _resume_fine_tune(
    record: dict[str, Any], latest: Path, model_config: ModelConfig | None
) -> _FineTuneStart:
    """A fine-tune's start as its ``latest.pt`` recorded it; its old pairs must be the same
    file still (they decide every epoch's rows)."""
    arch = model_config or ModelConfig.from_dict(record["architecture"])
    grid = record.get("wavelength_nm")
    start = _FineTuneStart(
        kind=str(record["from"]["kind"]),
        arch=arch,
        norm=Normalization.from_dict(record["normalization"]),
        lr=float(record["lr"]),
        material=str(record["material"]),
        grid=None if grid is None else np.asarray(grid, dtype=np.float64),
        record=record,
        run_source=f"fine-tune {latest} (from {record['from']['path']})",
    )
    old = record.get("old_pairs")
    if old is None:
        return start
    path = Path(old["path"])
    if not path.is_file():
        raise FileNotFoundError(
            f"{latest}: the fine-tune's old pairs {path} no longer exist; put them back to "
            "resume, or fine-tune into a new --output"
        )
    pairs = load_pairs(path)
    sha = _pairs_identity(path, pairs)["sha256"]
    if sha != old["sha256"]:
        raise ValueError(
            f"{latest}: --resume with other old pairs: {path} holds sha256 {sha[:12]}, the "
            f"fine-tune mixed in {str(old['sha256'])[:12]}; fine-tune into a new --output"
        )
    start.check_pairs(pairs, f"old pairs {path}")
    start.old_train, start.old_val = _Split.of(pairs, TRAIN), _Split.of(pairs, VAL)
    return start

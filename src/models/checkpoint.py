"""What a training checkpoint saves and restores (``latest.pt``, ``best.pt``), in one dataclass.

Saved and restored by the same two methods, so a field cannot be written under one key and read
under another. The keys on disk are those of earlier checkpoints (``bad_epochs`` counts
validations without improvement, as it always did), and checkpoints written before runs
recorded their data, recipe and settings read back with those as None: ``train --resume`` then
continues them unverified, saying so.

A fine-tune's checkpoint also holds where it started (``fine_tune``: the run, its old pairs
and their share, RUN's architecture and normalization), so ``--resume`` continues it from
``latest.pt`` alone.

Also here: what identifies a run for ``--resume`` (its data, its recipe, its resumable
settings) and the check that refuses a resume that would change what the run computes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from layout import material as film

if TYPE_CHECKING:
    from models.config import ModelConfig
    from models.train import TrainConfig

# The TrainConfig fields that decide what a run computes: a resume must keep them (with the
# architecture and the data), or the checkpoint and config.json would describe another run.
# "lr" is compared as resolved (base_lr), so --lr 1e-3 resumes a cosine run started without it.
RECIPE_FIELDS = (
    "task",
    "model",
    "batch_size",
    "lr",
    "weight_decay",
    "schedule",
    "warmup_fraction",
    "seed",
    "gather_with_grad",
    "augment",
)
# May change on resume, recorded: how long the run goes (epochs extends a finished run, though
# a cosine schedule then restarts from a later horizon; a time budget is per call anyway) and
# when it is validated or stopped, none of which alters a step already taken.
RESUMABLE_FIELDS = ("epochs", "patience", "time_budget_min", "val_every_steps", "precision")


@dataclass
class Checkpoint:
    """A run's whole state after a validation: enough to continue it bit for bit."""

    model_name: str
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int  # the epoch to continue in
    batch: int  # the batch of that epoch to continue from
    global_step: int
    planned_steps: int | None  # the schedule's horizon (None: written before it was saved)
    best_val_r1: float  # the task's selection figure as a number to maximize: val R@1, or
    # minus a surrogate's val MSE (the key is the one earlier checkpoints wrote)
    best_epoch: float
    bad_evals: int  # validations since the best one
    history: list[dict[str, float]]
    data: dict[str, str] | None
    recipe: dict[str, Any] | None
    settings: dict[str, Any] | None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    aug_rng: list[Tensor] = field(default_factory=list)  # one per rank
    torch_rng: Tensor | None = None
    # A fine-tune's start (``models.fine_tune.FineTune``): the run it started from, its old pairs
    # and their share, and RUN's architecture and normalization, so ``--resume`` rebuilds the
    # same network and data mix without RUN (which may have moved since). None: a plain run.
    fine_tune: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes, in the key order of earlier checkpoints."""
        return {
            "model_name": self.model_name,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "epoch": self.epoch,
            "batch": self.batch,
            "global_step": self.global_step,
            "planned_steps": self.planned_steps,
            "best_val_r1": self.best_val_r1,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_evals,
            "history": self.history,
            "data": self.data,
            "recipe": self.recipe,
            "settings": self.settings,
            "resumes": self.resumes,
            "elapsed_s": self.elapsed_s,
            "aug_rng": self.aug_rng,
            "torch_rng": self.torch_rng,
            "fine_tune": self.fine_tune,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Checkpoint:
        """The inverse of :meth:`to_dict`, for this and every earlier checkpoint layout."""
        planned = d.get("planned_steps")
        return Checkpoint(
            model_name=str(d["model_name"]),
            model=d["model"],
            optimizer=d["optimizer"],
            scheduler=d["scheduler"],
            epoch=int(d["epoch"]),
            batch=int(d.get("batch", 0)),
            global_step=int(d["global_step"]),
            planned_steps=None if planned is None else int(planned),
            best_val_r1=float(d["best_val_r1"]),
            best_epoch=float(d["best_epoch"]),
            bad_evals=int(d["bad_epochs"]),
            history=list(d["history"]),
            data=d.get("data"),
            recipe=d.get("recipe"),
            settings=d.get("settings"),
            resumes=list(d.get("resumes", [])),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            aug_rng=list(d["aug_rng"]),
            torch_rng=d["torch_rng"],
            fine_tune=d.get("fine_tune"),
        )

    @property
    def verified(self) -> bool:
        """Whether it records the data and recipe a resume is checked against."""
        return self.recipe is not None

    @property
    def was_budgeted(self) -> bool:
        """Whether the run that wrote it ran under a time budget (unknown for old ones: yes)."""
        return self.settings is None or self.settings["time_budget_min"] is not None


def data_identity(pairs_path: Path, arrays: Sequence[Sequence[Any]]) -> dict[str, str]:
    """The resolved path and a sha256 of the arrays that train and select the model (per
    split: geometry, params, spectra, design ids, as the run holds them): a re-written or moved
    file with the same pairs is the same data, a test split edited afterwards is not training
    data, and hashing in memory costs about a second per 100k pairs, without reading the file
    again."""
    h = hashlib.sha256()
    for split in arrays:
        *tensors, design_id = split
        for arr in tensors:
            h.update(f"{arr.dtype}{arr.shape};".encode())
            h.update(np.ascontiguousarray(arr).data)
        ids = np.ascontiguousarray(design_id, dtype=np.int64)
        h.update(f"{ids.shape};".encode())
        h.update(ids.data)
    return {"path": str(Path(pairs_path).resolve()), "sha256": h.hexdigest()}


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_recipe(cfg: TrainConfig, arch: ModelConfig) -> dict[str, Any]:
    """``RECIPE_FIELDS`` and the architecture, flattened (``augment.transpose``), as JSON
    values (tuples as lists), so a checkpoint's copy compares equal to a fresh one."""
    fields = asdict(cfg)
    recipe = {name: fields[name] for name in RECIPE_FIELDS}
    recipe["lr"] = cfg.base_lr
    recipe["architecture"] = arch.to_dict()
    flat: dict[str, Any] = json.loads(json.dumps(_flat(recipe)))
    return flat


def run_settings(cfg: TrainConfig, data: dict[str, str], world: int) -> dict[str, Any]:
    """What may change on resume (``RESUMABLE_FIELDS``, ranks, the pairs file's path)."""
    fields = asdict(cfg)
    return {
        **{name: fields[name] for name in RESUMABLE_FIELDS},
        "world_size": world,
        "pairs": data["path"],
    }


def check_resume(
    ckpt: Checkpoint,
    latest: Path,
    recipe: dict[str, Any],
    data: dict[str, str],
    settings: dict[str, Any],
) -> dict[str, list[Any]]:
    """Refuse to resume ``ckpt`` with other data or another recipe (a ValueError naming each
    changed field with its old and new value); return the allowed settings that changed, as
    ``{field: [old, new]}``. Pairs of another film material are named as such first: their
    spectra differ anyway, but "another film" says why."""
    assert ckpt.data is not None and ckpt.recipe is not None and ckpt.settings is not None
    old_data = ckpt.data
    if "material" not in old_data:
        raise ValueError(
            f"{latest} does not record the film material of its pairs (written before "
            "materials were recorded); train into a new --output"
        )
    film.require(
        data["material"], f"--resume pairs {data['path']}", old_data["material"], f"run {latest}"
    )
    if old_data["sha256"] != data["sha256"]:
        raise ValueError(
            f"{latest}: --resume with other data: the run trained on {old_data['path']} "
            f"(train/val sha256 {old_data['sha256'][:12]}), {data['path']} holds other pairs "
            f"(sha256 {data['sha256'][:12]}); train into a new --output to change the data"
        )
    old_recipe = {"task": "contrastive", **ckpt.recipe}  # runs from before tasks were contrastive
    changed = [
        f"{name} {old_recipe.get(name)!r} -> {recipe.get(name)!r}"
        for name in sorted(set(old_recipe) | set(recipe))
        if old_recipe.get(name) != recipe.get(name)
    ]
    if changed:
        raise ValueError(
            f"{latest}: --resume cannot change {', '.join(changed)}; resume with the run's "
            "values or train into a new --output"
        )
    old_settings = ckpt.settings
    return {
        name: [old_settings.get(name), value]
        for name, value in settings.items()
        if old_settings.get(name) != value
    }

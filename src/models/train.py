"""The training harness: pairs file in, model directory out; one process or many under torchrun.

Kept apart from the model library (as open_clip keeps ``open_clip_train`` apart from
``open_clip``): nothing here is needed to load or use a trained model.

Reproducibility rests on explicit state: the model is initialized after ``torch.manual_seed``,
batches come from a seeded ``DistributedSampler`` (``set_epoch`` per epoch), augmentations draw
from their own generator, and all of it goes into ``latest.pt`` so ``--resume`` continues the
same streams an uninterrupted run would have used, mid-epoch included (the checkpoint records
the batch to continue from).

A wall-clock budget (``time_budget_min``) trades that reproducibility for a bounded run: a
cosine or step schedule cut off at an arbitrary step never anneals, so under a budget the
schedule's horizon is fitted to the steps the budget allows at the rate measured so far (after
``PROBE_STEPS`` steps and again after every validation), and training stops at whichever comes
first: the fitted horizon, the budget, the epochs, or patience. Why it stopped is written to
``metrics.json``.

A run reports only what happened. A non-finite loss, or non-finite weights or validation
embeddings, stops it with a ``Diverged`` error naming the step; the model directory then holds
at most the best checkpoint validated before it (finite by the same checks; ``write_model_dir``
refuses non-finite weights anyway), and ``metrics.json`` says why the run stopped. ``--resume``
continues only the run that ``latest.pt`` records: a change of the training data (its film
material, a hash of the train and validation pairs) or of the recipe (``RECIPE_FIELDS``, the architecture) is refused;
the settings that only decide how long the run goes or how often it is watched
(``RESUMABLE_FIELDS``, the number of ranks, the pairs file's path) may change, and each resume
with what it changed goes into ``config.json`` and ``latest.pt`` under ``resumes``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from common.atomic import atomic_output
from dataset.pairs_file import TRAIN, VAL, Pairs
from dataset.pairs_io import load_pairs
from layout import material as film
from models.augment import AugmentConfig, augment
from models.config import ModelConfig, get_config
from models.loss import ClipLoss
from models.model import ContrastiveModel, Normalization
from models.model_dir import (
    CONFIG_FILE,
    LATEST_FILE,
    MODEL_FILE,
    nonfinite_tensors,
    read_config,
    save_json,
    save_torch,
    write_model_dir,
)
from models.retrieval import cosine_scores, embed, nonfinite_rows, ranks_of_truth, recall_at

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "moclip")
PRECISIONS = ("fp32", "bf16")
# MOCLIP steps its learning rate 1e-4 → 5e-5 → 3e-5; the paper gives the rates, not where the
# steps fall, so they sit at half and four fifths of the run.
MOCLIP_STAGES = ((0.0, 1.0), (0.5, 0.5), (0.8, 0.3))
BEST_FILE = "best.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
PROBE_STEPS = 20  # steps timed before the first fit of a budgeted schedule
STOP_MESSAGES = {
    "epochs": "all epochs done",
    "patience": "no better validation R@1 within the patience",
    "time_budget": "time budget passed",
    "budget_schedule": "schedule fitted to the time budget completed",
    "diverged": "training diverged (non-finite loss, weights or embeddings)",
}
# The TrainConfig fields that decide what a run computes: a resume must keep them (with the
# architecture and the data), or the checkpoint and config.json would describe another run.
# "lr" is compared as resolved (base_lr), so --lr 1e-3 resumes a cosine run started without it.
RECIPE_FIELDS = (
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


class Diverged(ValueError):
    """Training produced a non-finite loss, weights or embeddings (a one-line message)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run besides the data; saved in ``config.json``."""

    model: str = "metascan-small"
    epochs: int = 10
    batch_size: int = 64  # global: split evenly over ranks
    lr: float | None = None  # None: 1e-4 for the MOCLIP schedule, 1e-3 for cosine
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    seed: int = 0
    patience: int = 0  # validations without a better val R@1 before stopping; 0: never
    gather_with_grad: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    time_budget_min: float | None = None  # wall clock of one train() call, loading included
    val_every_steps: int = 0  # validate (and checkpoint) every N steps too; 0: once per epoch
    precision: str = "fp32"  # "bf16": autocast the forward pass (CPU with AVX-512-bf16, or CUDA)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be >= 1")
        if self.batch_size < 2:
            raise ValueError(f"batch-size={self.batch_size} must be >= 2 (a contrastive batch)")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr} must be a positive number")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} not in {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.patience < 0:
            raise ValueError(f"patience={self.patience} must be >= 0")
        if self.time_budget_min is not None and not (
            math.isfinite(self.time_budget_min) and self.time_budget_min > 0
        ):
            raise ValueError(
                f"time-budget-min={self.time_budget_min} must be a positive number of minutes"
            )
        if self.val_every_steps < 0:
            raise ValueError(f"val-every-steps={self.val_every_steps} must be >= 0 (0: per epoch)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} not in {', '.join(PRECISIONS)}")

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.schedule == "moclip" else 1e-3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "base_lr": self.base_lr}


def lr_multiplier(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """The factor on the base learning rate at optimizer step ``step`` (0-based)."""
    if schedule == "moclip":
        frac = step / max(1, total_steps)
        return [m for start, m in MOCLIP_STAGES if frac >= start][-1]
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit_horizon(done: int, run_steps: int, run_s: float, remaining_s: float, cap: int) -> int:
    """The step a budgeted schedule should end at: the ``done`` steps plus as many as
    ``remaining_s`` allows at the rate of this run so far (``run_steps`` in ``run_s``, its
    validations included), never past ``cap`` (the epochs' steps) nor before ``done``."""
    if run_steps <= 0 or run_s <= 0:
        return cap
    more = int(max(0.0, remaining_s) * run_steps / run_s)
    return max(done, min(cap, done + more))


@dataclass
class TrainResult:
    """What a run ended with; the same numbers are in ``metrics.json``."""

    history: list[dict[str, float]]
    best_val_r1: float
    best_epoch: float  # fractional when validating mid-epoch
    stopped_early: bool  # by patience
    stop_reason: str = "epochs"  # a key of STOP_MESSAGES
    steps: int = 0


@dataclass
class _Plan:
    """The schedule's horizon; mutable because a time budget refits it during the run."""

    steps: int
    warmup_fraction: float

    @property
    def warmup(self) -> int:
        return int(self.warmup_fraction * self.steps)


@dataclass(frozen=True)
class _Clock:
    """Wall clock of one train() call against its optional budget."""

    start: float
    budget_s: float | None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def passed(self) -> bool:
        return self.budget_s is not None and self.elapsed() >= self.budget_s

    def remaining(self) -> float:
        return math.inf if self.budget_s is None else self.budget_s - self.elapsed()


class _Indices(Dataset[int]):
    """The sampler needs a sized dataset; the tensors themselves stay in memory."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@dataclass(frozen=True)
class _Split:
    geometry: Tensor  # (N, S, S) uint8
    params: Tensor  # (N, 2) float32 µm
    spectra: Tensor  # (N, 2, W) float32
    design_id: np.ndarray[Any, np.dtype[np.int64]]

    @staticmethod
    def of(pairs: Pairs, code: int) -> _Split:
        rows = np.flatnonzero(pairs.split == code)
        return _Split(
            torch.from_numpy(np.ascontiguousarray(pairs.geometry[rows]).view(np.uint8)),
            torch.from_numpy(pairs.params[rows].astype(np.float32)),
            torch.from_numpy(pairs.spectra[rows].astype(np.float32)),
            pairs.design_id[rows],
        )

    def __len__(self) -> int:
        return int(self.geometry.shape[0])


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), joining the process group torchrun describes."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast of the forward pass when asked for, on the CPU as on CUDA.

    On this project's CPU (AVX-512-bf16, no AMX) a metascan-small step at batch 256 runs ~1.5x
    faster in bf16 (``benchmarks/bench_models.py --precision``); the loss and the optimizer stay
    in float32, so bf16 only rounds activations. fp32 stays the default: it is bit-reproducible.
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: torch.nn.Module,
    loss_fn: ClipLoss,
    optimizer: torch.optim.Optimizer,
    image: Tensor,
    params_um: Tensor,
    spectra: Tensor,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """One optimizer step on this rank's shard of the global batch; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    with _autocast(device, precision):
        g, s, scale = model(image, params_um, spectra)
    loss = loss_fn(g.float(), s.float(), scale.float())
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def validation_recall(
    model: ContrastiveModel, split: _Split, device: torch.device
) -> dict[int, float]:
    """Spectrum → geometry R@1 and R@5 over the whole validation split; ``Diverged`` when an
    embedding is not finite (its scores would mean nothing)."""
    g, s = embed(model, split.geometry, split.params, split.spectra, device=device)
    bad = nonfinite_rows(g, s)
    if bad is not None:
        raise Diverged(f"validation {bad} are not finite")
    ranks = ranks_of_truth(cosine_scores(s, g), split.design_id, split.design_id)
    return recall_at(ranks, (1, 5))


def _write_metrics(
    folder: Path, history: list[dict[str, float]], stop: dict[str, Any] | None
) -> None:
    """``metrics.json``: ``{"history": [row per validation], "stop": why it ended or null while
    running}``; ``metrics.csv``: the rows alone."""
    save_json({"history": history, "stop": stop}, folder / METRICS_JSON)
    if not history:
        return
    fields: dict[str, None] = {}  # ordered union: rows from an older checkpoint may lack columns
    for row in history:
        fields.update(dict.fromkeys(row))
    with atomic_output(folder / METRICS_CSV) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(history)


def _batches(
    sampler: DistributedSampler[int], local_batch: int, steps: int, first: int = 0
) -> Iterator[Tensor]:
    """The epoch's batches from batch ``first`` on (a resumed run continues mid-epoch)."""
    order = torch.tensor(list(sampler), dtype=torch.long)
    for i in range(first, steps):
        yield order[i * local_batch : (i + 1) * local_batch]


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any: all ranks must stop together."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def data_identity(pairs_path: Path, splits: tuple[_Split, ...]) -> dict[str, str]:
    """The resolved path and a sha256 of the arrays that train and select the model (the
    train and validation splits as the run holds them): a re-written or moved file with the
    same pairs is the same data, a test split edited afterwards is not training data, and
    hashing in memory costs about a second per 100k pairs, without reading the file again."""
    h = hashlib.sha256()
    for split in splits:
        for arr in (split.geometry.numpy(), split.params.numpy(), split.spectra.numpy()):
            h.update(f"{arr.dtype}{arr.shape};".encode())
            h.update(np.ascontiguousarray(arr).data)
        ids = np.ascontiguousarray(split.design_id, dtype=np.int64)
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


def _settings(cfg: TrainConfig, data: dict[str, str], world: int) -> dict[str, Any]:
    fields = asdict(cfg)
    return {
        **{name: fields[name] for name in RESUMABLE_FIELDS},
        "world_size": world,
        "pairs": data["path"],
    }


def check_resume(
    ckpt: dict[str, Any],
    latest: Path,
    recipe: dict[str, Any],
    data: dict[str, str],
    settings: dict[str, Any],
) -> dict[str, list[Any]]:
    """Refuse to resume ``ckpt`` with other data or another recipe (a ValueError naming each
    changed field with its old and new value); return the allowed settings that changed, as
    ``{field: [old, new]}``. Pairs of another film material are named as such first: their
    spectra differ anyway, but "another film" says why."""
    old_data = ckpt["data"]
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
    old_recipe = ckpt["recipe"]
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
    old_settings = ckpt["settings"]
    return {
        name: [old_settings.get(name), value]
        for name, value in settings.items()
        if old_settings.get(name) != value
    }


def _from_rank0(values: list[float], world: int, device: torch.device) -> list[float]:
    """Rank 0's values on every rank: decisions from a clock must not differ between ranks."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.tolist()]


def train(
    pairs_path: Path,
    output: Path,
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    model_config: ModelConfig | None = None,
) -> TrainResult:
    """Train on the train split, select on the validation split, write the model directory.

    ``model_config`` overrides the named architecture (tests use tiny ones); ``on_epoch_end``
    is called after each validation's checkpoint is on disk, with the whole epochs done so far.
    """
    clock = _Clock(
        time.perf_counter(), None if cfg.time_budget_min is None else 60 * cfg.time_budget_min
    )
    budgeted = cfg.time_budget_min is not None
    output = Path(output)
    arch = model_config or get_config(cfg.model)
    pairs = load_pairs(pairs_path)
    if pairs.spectra.shape[2] != arch.num_wavelengths:
        arch = replace(arch, num_wavelengths=int(pairs.spectra.shape[2]))
    if pairs.geometry.shape[1] != arch.image_size:
        raise ValueError(
            f"{pairs_path}: geometry is {pairs.geometry.shape[1]} px, the model expects "
            f"{arch.image_size}"
        )
    train_split, val_split = _Split.of(pairs, TRAIN), _Split.of(pairs, VAL)
    if len(val_split) == 0:
        raise ValueError(f"{pairs_path} has no validation pairs (split code {VAL})")

    rank, world, local_rank = _distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch-size={cfg.batch_size} must be divisible by {world} ranks")
    per_rank = len(train_split) // world
    local_batch = min(cfg.batch_size // world, per_rank)
    if local_batch < 2:
        raise ValueError(
            f"{pairs_path} has {len(train_split)} training pairs: too few for a batch on "
            f"{world} rank(s)"
        )
    steps_per_epoch = per_rank // local_batch
    total_steps = steps_per_epoch * cfg.epochs
    data = {**data_identity(pairs_path, (train_split, val_split)), "material": pairs.material}
    recipe = run_recipe(cfg, arch)
    settings = _settings(cfg, data, world)
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    latest = output / LATEST_FILE
    if latest.exists() and not resume:
        raise FileExistsError(f"{output} already holds a run; pass --resume or a new --output")
    if resume and not latest.is_file():
        raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = ContrastiveModel(
        arch, Normalization.fit(train_split.params.numpy(), train_split.spectra.numpy())
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    plan = _Plan(total_steps, cfg.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(cfg.schedule, step, plan.steps, plan.warmup)
    )
    aug_rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank + 1)
    sampler: DistributedSampler[int] = DistributedSampler(
        _Indices(len(train_split)), world, rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    history: list[dict[str, float]] = []
    start_epoch, start_batch, global_step = 0, 0, 0
    best_r1, best_epoch, bad_evals, elapsed_before = -1.0, -1.0, 0, 0.0
    resumes: list[dict[str, Any]] = []
    resumed: dict[str, Any] | None = None
    if resume:
        ckpt = resumed = torch.load(latest, map_location=device, weights_only=True)
        if "recipe" in ckpt:
            changed = check_resume(ckpt, latest, recipe, data, settings)
            resumes = [
                *ckpt.get("resumes", []),
                {"step": int(ckpt["global_step"]), "changed": changed},
            ]
            for name, (old, new) in changed.items():
                log.warning("resuming %s with %s %r (was %r)", output, name, new, old)
        else:  # written before checkpoints recorded their data and recipe
            if ckpt["model_name"] != arch.name:
                raise ValueError(
                    f"{latest} was trained as {ckpt['model_name']!r}, not {arch.name!r}"
                )
            log.warning("%s records no data or recipe: resuming unverified", latest)
            resumes = [{"step": int(ckpt["global_step"]), "changed": {}, "verified": False}]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        aug_rng.set_state(ckpt["aug_rng"][rank % len(ckpt["aug_rng"])].cpu())
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        start_batch = int(ckpt.get("batch", 0))
        best_r1, best_epoch = float(ckpt["best_val_r1"]), float(ckpt["best_epoch"])
        bad_evals, history = int(ckpt["bad_epochs"]), list(ckpt["history"])
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        planned = int(ckpt.get("planned_steps", total_steps))
        was_budgeted = "settings" not in ckpt or ckpt["settings"]["time_budget_min"] is not None
        if budgeted and was_budgeted and planned > global_step:
            # The budget's horizon so far; refitted once this run's rate is known. A horizon
            # that an earlier budget ended, or the epochs of an unbudgeted run, give way to
            # this run's epochs until then (the resume records the changed budget).
            plan.steps = min(planned, total_steps)
        log.info("resumed %s at step %d (epoch %d)", output, global_step, start_epoch)

    net: torch.nn.Module = model
    if world > 1:
        net = DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    loss_fn = ClipLoss(cfg.gather_with_grad)
    train_record: dict[str, Any] = {
        "train": cfg.to_dict(),
        "pairs": str(pairs_path),
        "data": data,
        "world_size": world,
        "resumes": resumes,
    }
    if resumed is not None:
        # From here on the resumed run's settings apply, so latest.pt and config.json say so
        # before the first step, whether or not a step is left to take (config.json's model
        # stays the one taken at its recorded step).
        if world > 1:
            dist.barrier()  # every rank has read latest.pt before rank 0 replaces it
        if rank == 0:
            record = {"data": data, "recipe": recipe, "settings": settings, "resumes": resumes}
            save_torch({**resumed, **record}, latest)
            if (output / CONFIG_FILE).is_file():
                saved = read_config(output)
                saved["train"] = {**train_record, "step": saved.get("train", {}).get("step")}
                save_json(saved, output / CONFIG_FILE)
    bar = tqdm(
        total=total_steps,
        initial=global_step,
        desc="train",
        unit="step",
        disable=not progress or rank != 0,
    )
    loop_start, run_steps = time.perf_counter(), 0

    def refit() -> None:
        """Rank 0 fits the horizon to the budget; every rank takes its number."""
        run_s = time.perf_counter() - loop_start
        steps = fit_horizon(global_step, run_steps, run_s, clock.remaining(), total_steps)
        plan.steps = int(_from_rank0([float(steps)], world, device)[0])

    def diverged(reason: str, lr: float) -> Diverged:
        """The error that ends a diverged run, after metrics.json records it."""
        bar.close()
        if best_r1 >= 0 and (output / MODEL_FILE).is_file():
            kept = (
                f"{output / MODEL_FILE} is still the best checkpoint before it (epoch "
                f"{round(best_epoch, 2):g}, val R@1 {best_r1:.3f})"
            )
        else:
            kept = f"no model was written to {output}"
        message = (
            f"training diverged at step {global_step}: {reason} (lr {lr:.3g}, base "
            f"--lr {cfg.base_lr:g}); lower --lr and train into a new --output; {kept}"
        )
        if rank == 0 and output.is_dir():
            _write_metrics(output, history, stop_record("diverged", message))
        return Diverged(message)

    def stop_record(reason: str, message: str) -> dict[str, Any]:
        """Why and where the run ended, as ``metrics.json`` records it."""
        return {
            "reason": reason,
            "message": message,
            "epoch": history[-1]["epoch"] if history else 0.0,
            "step": global_step,
            "elapsed_s": elapsed_before + clock.elapsed(),
            "time_budget_min": cfg.time_budget_min,
            "planned_steps": plan.steps,
            "best_val_r1": best_r1,
            "best_epoch": best_epoch,
        }

    stop_reason = "epochs"
    last_eval = time.perf_counter()
    losses: list[float] = []
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        first = start_batch if epoch == start_epoch else 0
        stop: str | None = None
        for batch, idx in enumerate(_batches(sampler, local_batch, steps_per_epoch, first), first):
            image = train_split.geometry[idx].to(device)
            spectra = train_split.spectra[idx].to(device)
            image, spectra = augment(image, spectra, cfg.augment, aug_rng)
            step_lr = float(optimizer.param_groups[0]["lr"])
            loss = train_step(
                net, loss_fn, optimizer, image, train_split.params[idx].to(device), spectra, device,
                cfg.precision,
            )  # fmt: skip
            global_step += 1
            if _any_rank(not math.isfinite(loss), world, device):
                here = not math.isfinite(loss)
                raise diverged(f"loss is {loss if here else 'not finite on another rank'}", step_lr)
            losses.append(loss)
            scheduler.step()
            run_steps += 1
            bar.update(1)
            if budgeted:
                if run_steps == PROBE_STEPS:
                    refit()
                if _from_rank0([float(clock.passed())], world, device)[0]:
                    stop = "time_budget"
                elif global_step >= plan.steps < total_steps:
                    stop = "budget_schedule"
            done = batch + 1
            if not (
                done == steps_per_epoch
                or stop is not None
                or (cfg.val_every_steps and global_step % cfg.val_every_steps == 0)
            ):
                continue
            next_epoch, next_batch = (epoch + 1, 0) if done == steps_per_epoch else (epoch, done)
            val_start = time.perf_counter()
            bad_weights = nonfinite_tensors(model.state_dict())
            if bad_weights:
                raise diverged(f"weights {bad_weights[0]!r} are not finite", step_lr)
            try:
                recall = validation_recall(model, val_split, device)
            except Diverged as exc:
                raise diverged(str(exc), step_lr) from None
            model.train()
            now = time.perf_counter()
            row = {
                "epoch": epoch + done / steps_per_epoch,
                "step": float(global_step),
                "train_loss": float(np.mean(losses)),
                "val_r1": recall[1],
                "val_r5": recall[5],
                "lr": float(scheduler.get_last_lr()[0]),
                "temperature": float(1 / model.logit_scale.exp().clamp(max=100).item()),
                "seconds": now - last_eval,  # training and this validation
                "val_seconds": now - val_start,
                "elapsed_s": elapsed_before + clock.elapsed(),
            }
            last_eval, losses = now, []
            history.append(row)
            improved = recall[1] > best_r1
            if improved:
                best_r1, best_epoch, bad_evals = recall[1], row["epoch"], 0
            else:
                bad_evals += 1
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_r1=f"{recall[1]:.3f}")
            if budgeted and stop is None:
                refit()  # the rate now includes a validation's cost
            rng_states = [aug_rng.get_state()]
            if world > 1:
                gathered: list[Any] = [None] * world
                dist.all_gather_object(gathered, aug_rng.get_state())
                rng_states = gathered
            if rank == 0:
                ckpt_out = {
                    "model_name": arch.name,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": next_epoch,
                    "batch": next_batch,
                    "global_step": global_step,
                    "planned_steps": plan.steps,
                    "best_val_r1": best_r1,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_evals,
                    "history": history,
                    "data": data,
                    "recipe": recipe,
                    "settings": settings,
                    "resumes": resumes,
                    "elapsed_s": row["elapsed_s"],
                    "aug_rng": rng_states,
                    "torch_rng": torch.get_rng_state(),
                }
                if improved:
                    write_model_dir(
                        output,
                        model,
                        {**train_record, "step": global_step},
                        material=pairs.material,
                    )
                    save_torch(ckpt_out, output / BEST_FILE)
                save_torch(ckpt_out, latest)
                _write_metrics(output, history, None)
                log.info("step %d: %s", global_step, row)
            if on_epoch_end is not None:
                on_epoch_end(next_epoch, row)
            if stop is None and cfg.patience and bad_evals >= cfg.patience:
                stop = "patience"
                log.info("no better val R@1 for %d validations: stopping", bad_evals)
            if stop is not None:
                break
        if stop is not None:
            stop_reason = stop
            break
    bar.close()
    if rank == 0 and output.is_dir():
        _write_metrics(output, history, stop_record(stop_reason, STOP_MESSAGES[stop_reason]))
    log.info("stopped: %s", STOP_MESSAGES[stop_reason])
    return TrainResult(
        history, best_r1, best_epoch, stop_reason == "patience", stop_reason, global_step
    )

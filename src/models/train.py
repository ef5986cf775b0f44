"""The training harness: pairs file in, model directory out; one process or many under torchrun.

Kept apart from the model library (as open_clip keeps ``open_clip_train`` apart from
``open_clip``): nothing here is needed to load or use a trained model. Split as open_clip
splits it: the schedule (:mod:`models.schedule`), what a checkpoint holds
(:mod:`models.checkpoint`), the collectives (:mod:`models.distributed`), a pairs file's split
as tensors (:mod:`models.splits`), a fine-tune's start (:mod:`models.fine_tune`), and here
:meth:`_Run.train_one_epoch`, :meth:`_Run.validate` and :func:`train`, which wires them.

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

**Fine-tuning** (``metascan train --resume-from RUN``): where the run starts and what each
epoch trains on are decided in :mod:`models.fine_tune`, whose docstring says why; here the run
takes RUN's weights and normalization, validates them as its step-0 row (a candidate for the
best model), draws each epoch's rows with :func:`models.fine_tune.epoch_rows`, and scores the
old pairs' validation split beside the new one (``old_val_*``).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from common.atomic import atomic_output, save_json
from dataset.pairs_file import TRAIN, VAL
from dataset.pairs_io import load_pairs
from models import distributed as ranks
from models.augment import AugmentConfig, augment
from models.checkpoint import Checkpoint, check_resume, data_identity, run_recipe, run_settings
from models.config import ModelConfig, get_config
from models.fine_tune import (
    FineTune,
    _check_fine_tune_output,
    _FineTuneStart,
    _resume_fine_tune,
    _start_fine_tune,
    epoch_rows,
    old_rows_per_epoch,
)
from models.model import ContrastiveModel, Normalization
from models.model_dir import (
    CONFIG_FILE,
    LATEST_FILE,
    MODEL_FILE,
    nonfinite_tensors,
    read_config,
    save_torch,
    write_model_dir,
)
from models.schedule import SCHEDULES, BudgetClock, Horizon, fit_horizon, lr_multiplier
from models.splits import _Split
from models.surrogate import ForwardSurrogate
from models.tasks import TASKS, BatchLoss, Diverged, Task, task_for

__all__ = [
    "Diverged",
    "TrainConfig",
    "TrainResult",
    "train",
    "train_step",
]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
BEST_FILE = "best.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
PROBE_STEPS = 20  # steps timed before the first fit of a budgeted schedule
STOP_MESSAGES = {
    "epochs": "all epochs done",
    "patience": "no better validation figure (R@1, or a surrogate's MSE) within the patience",
    "time_budget": "time budget passed",
    "budget_schedule": "schedule fitted to the time budget completed",
    "diverged": "training diverged (non-finite loss, weights or embeddings)",
}


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
    task: str = "contrastive"  # or "surrogate": the forward model (models.tasks)

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
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} not in {', '.join(TASKS)}")

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.schedule == "moclip" else 1e-3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "base_lr": self.base_lr}


@dataclass
class TrainResult:
    """What a run ended with; the same numbers are in ``metrics.json``."""

    history: list[dict[str, float]]
    best_value: float  # of the task's selection figure (val R@1, or a surrogate's val MSE)
    best_epoch: float  # fractional when validating mid-epoch
    stopped_early: bool  # by patience
    stop_reason: str = "epochs"  # a key of STOP_MESSAGES
    steps: int = 0
    selection: str = "val_r1"  # the history key best_value is of


class _Indices(Dataset[int]):
    """The sampler needs a sized dataset; the tensors themselves stay in memory."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


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
    loss_fn: BatchLoss,
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
        outputs = loss_fn.forward(model, image, params_um, spectra)
    loss = loss_fn(outputs, spectra)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach())


def _write_metrics(
    folder: Path, history: list[dict[str, float]], stop: dict[str, Any] | None
) -> None:
    """``metrics.json``: ``{"history": [row per validation], "stop": why it ended or null while
    running}``; ``metrics.csv``: the rows alone."""
    save_json({"history": history, "stop": stop}, folder / METRICS_JSON)
    if not history:
        return
    # Ordered union, the latest row's order first: rows from an older checkpoint may lack
    # columns, and a fine-tune's step-0 row has no train_loss. A missing figure is "nan" in
    # the CSV (not measured; it still parses as a number), absent from the JSON.
    fields: dict[str, None] = {}
    for row in (history[-1], *history):
        fields.update(dict.fromkeys(row))
    with atomic_output(folder / METRICS_CSV) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), restval="nan")
        writer.writeheader()
        writer.writerows(history)


def _batches(
    sampler: DistributedSampler[int], local_batch: int, steps: int, first: int = 0
) -> Iterator[Tensor]:
    """The epoch's batches from batch ``first`` on (a resumed run continues mid-epoch)."""
    order = torch.tensor(list(sampler), dtype=torch.long)
    for i in range(first, steps):
        yield order[i * local_batch : (i + 1) * local_batch]


@dataclass
class _Run:
    """One ``train()`` call's live state: the model and its optimizer, the data, where the run
    is (``step``, ``best_score``, ...), and the four jobs of the loop as methods: one epoch of
    steps, a validation with its checkpoint, a refit of a budgeted horizon, and the record of
    why the run stopped."""

    cfg: TrainConfig
    arch: ModelConfig
    output: Path
    material: str
    train_split: _Split
    val_split: _Split
    model: ContrastiveModel | ForwardSurrogate
    task: Task
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    horizon: Horizon
    clock: BudgetClock
    aug_rng: torch.Generator
    sampler: DistributedSampler[int]
    rank: int
    world: int
    device: torch.device
    local_batch: int
    steps_per_epoch: int
    data: dict[str, str]
    recipe: dict[str, Any]
    settings: dict[str, Any]
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
    # The training pool is ``train_split``: ``pool_new`` new rows, then ``pool_old`` old ones
    # of a fine-tune, drawn into each epoch by ``epoch_rows`` at ``old_fraction``.
    pool_new: int = 0
    pool_old: int = 0
    old_fraction: float = 0.0
    old_val: _Split | None = None  # a fine-tune's old validation split: scored, not selected on
    fine_tune: dict[str, Any] | None = None  # Checkpoint.fine_tune
    net: torch.nn.Module | None = None  # the model, wrapped in DDP over several ranks
    loss_fn: BatchLoss | None = None
    bar: Any = None
    train_record: dict[str, Any] = field(default_factory=dict)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    global_step: int = 0
    best_score: float = -math.inf  # the task's selection figure, as a number to maximize
    best_epoch: float = -1.0
    bad_evals: int = 0
    elapsed_before: float = 0.0
    run_steps: int = 0
    loop_start: float = 0.0
    last_eval: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @property
    def budgeted(self) -> bool:
        return self.cfg.time_budget_min is not None

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue where ``ckpt`` stopped: weights, optimizer, schedule, RNG streams, counters."""
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        self.aug_rng.set_state(ckpt.aug_rng[self.rank % len(ckpt.aug_rng)].cpu())
        assert ckpt.torch_rng is not None
        torch.set_rng_state(ckpt.torch_rng.cpu())
        self.global_step = ckpt.global_step
        self.best_score, self.best_epoch = ckpt.best_val_r1, ckpt.best_epoch
        self.bad_evals, self.history = ckpt.bad_evals, list(ckpt.history)
        self.elapsed_before = ckpt.elapsed_s
        planned = self.total_steps if ckpt.planned_steps is None else ckpt.planned_steps
        if self.budgeted and ckpt.was_budgeted and planned > self.global_step:
            # The budget's horizon so far; refitted once this run's rate is known. A horizon
            # that an earlier budget ended, or the epochs of an unbudgeted run, give way to
            # this run's epochs until then (the resume records the changed budget).
            self.horizon.steps = min(planned, self.total_steps)

    def checkpoint(self, next_epoch: int, next_batch: int, elapsed_s: float) -> Checkpoint:
        """The state to continue from batch ``next_batch`` of epoch ``next_epoch``."""
        return Checkpoint(
            model_name=self.arch.name,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            epoch=next_epoch,
            batch=next_batch,
            global_step=self.global_step,
            planned_steps=self.horizon.steps,
            best_val_r1=self.best_score,
            best_epoch=self.best_epoch,
            bad_evals=self.bad_evals,
            history=self.history,
            data=self.data,
            recipe=self.recipe,
            settings=self.settings,
            resumes=self.resumes,
            elapsed_s=elapsed_s,
            aug_rng=ranks.gathered(self.aug_rng.get_state(), self.world),
            torch_rng=torch.get_rng_state(),
            fine_tune=self.fine_tune,
        )

    def refit(self) -> None:
        """Rank 0 fits the horizon to the budget; every rank takes its number."""
        run_s = time.perf_counter() - self.loop_start
        steps = fit_horizon(
            self.global_step, self.run_steps, run_s, self.clock.remaining(), self.total_steps
        )
        self.horizon.steps = int(ranks.from_rank0([float(steps)], self.world, self.device)[0])

    def diverged(self, reason: str, lr: float) -> Diverged:
        """The error that ends a diverged run, after metrics.json records it."""
        self.bar.close()
        if self.best_epoch >= 0 and (self.output / MODEL_FILE).is_file():
            kept = (
                f"{self.output / MODEL_FILE} is still the best checkpoint before it (epoch "
                f"{round(self.best_epoch, 2):g}, {self.task.label} "
                f"{self.task.value(self.best_score):{self.task.fmt}})"
            )
        else:
            kept = f"no model was written to {self.output}"
        message = (
            f"training diverged at step {self.global_step}: {reason} (lr {lr:.3g}, base "
            f"--lr {self.cfg.base_lr:g}); lower --lr and train into a new --output; {kept}"
        )
        if self.rank == 0 and self.output.is_dir():
            _write_metrics(self.output, self.history, self.stop_record("diverged", message))
        return Diverged(message)

    def stop_record(self, reason: str, message: str) -> dict[str, Any]:
        """Why and where the run ended, as ``metrics.json`` records it; a fine-tune adds its
        start (RUN's figures on the new and old validation splits) and the old figure of the
        best row, so what was gained and what was forgotten are two subtractions."""
        record = self._stop_record(reason, message)
        if self.fine_tune is not None and self.history and self.history[0]["step"] == 0:
            selection, first = self.task.selection, self.history[0]
            best = next((r for r in self.history if r["epoch"] == self.best_epoch), first)
            old = f"old_{selection}"
            record["fine_tune"] = {
                "old_fraction": self.old_fraction,
                "old_pairs_per_epoch": self.fine_tune.get("old_pairs_per_epoch", 0),
                f"start_{selection}": first.get(selection),
                f"start_{old}": first.get(old),
                f"best_{old}": best.get(old),
            }
        return record

    def _stop_record(self, reason: str, message: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "message": message,
            "epoch": self.history[-1]["epoch"] if self.history else 0.0,
            "step": self.global_step,
            "elapsed_s": self.elapsed_before + self.clock.elapsed(),
            "time_budget_min": self.cfg.time_budget_min,
            "planned_steps": self.horizon.steps,
            f"best_{self.task.selection}": self.task.value(self.best_score),
            "best_epoch": self.best_epoch,
        }

    def train_one_epoch(self, epoch: int, first: int) -> str | None:
        """Steps of ``epoch`` from batch ``first`` on, validating where the config says;
        returns why the run must stop now (a key of ``STOP_MESSAGES``) or None."""
        cfg, split, device = self.cfg, self.train_split, self.device
        assert self.net is not None and self.loss_fn is not None
        self.sampler.set_epoch(epoch)
        self.model.train()
        stop: str | None = None
        rows = torch.from_numpy(
            epoch_rows(self.pool_new, self.pool_old, self.old_fraction, cfg.seed, epoch)
        )
        if self.pool_old:
            log.info("epoch %d: %d new and %d old pairs", epoch, self.pool_new,
                     len(rows) - self.pool_new)  # fmt: skip
        batches = _batches(self.sampler, self.local_batch, self.steps_per_epoch, first)
        for batch, order in enumerate(batches, first):
            idx = rows[order]
            image = split.geometry[idx].to(device)
            spectra = split.spectra[idx].to(device)
            image, spectra = augment(image, spectra, cfg.augment, self.aug_rng)
            step_lr = float(self.optimizer.param_groups[0]["lr"])
            loss = train_step(
                self.net, self.loss_fn, self.optimizer, image, split.params[idx].to(device),
                spectra, device, cfg.precision,
            )  # fmt: skip
            self.global_step += 1
            if ranks.any_rank(not math.isfinite(loss), self.world, device):
                here = not math.isfinite(loss)
                reason = f"loss is {loss if here else 'not finite on another rank'}"
                raise self.diverged(reason, step_lr)
            self.losses.append(loss)
            self.scheduler.step()
            self.run_steps += 1
            self.bar.update(1)
            if self.budgeted:
                if self.run_steps == PROBE_STEPS:
                    self.refit()
                if ranks.from_rank0([float(self.clock.passed())], self.world, device)[0]:
                    stop = "time_budget"
                elif self.global_step >= self.horizon.steps < self.total_steps:
                    stop = "budget_schedule"
            done = batch + 1
            if not (
                done == self.steps_per_epoch
                or stop is not None
                or (cfg.val_every_steps and self.global_step % cfg.val_every_steps == 0)
            ):
                continue
            stop = self.validate(epoch, done, stop, step_lr)
            if stop is not None:
                return stop
        return None

    def figures(self, step_lr: float) -> dict[str, float]:
        """The task's validation figures on the validation split and, for a fine-tune, the
        old file's (``old_val_*``), rank 0's on every rank; a non-finite weight or output ends
        the run."""
        bad_weights = nonfinite_tensors(self.model.state_dict())
        if bad_weights:
            raise self.diverged(f"weights {bad_weights[0]!r} are not finite", step_lr)
        try:
            figures = self.task.validate(self.model, self.val_split, self.device)
            if self.old_val is not None and len(self.old_val):
                old = self.task.validate(self.model, self.old_val, self.device)
                figures.update({f"old_{k}": v for k, v in old.items() if k.startswith("val_")})
        except Diverged as exc:
            raise self.diverged(str(exc), step_lr) from None
        self.model.train()
        # Batch-norm running statistics differ between ranks, so would each rank's figures;
        # the best model and patience must be decided on one set, rank 0's (which it writes).
        keys = sorted(figures)
        values = ranks.from_rank0([figures[k] for k in keys], self.world, self.device)
        return dict(zip(keys, values, strict=True))

    def save(self, next_epoch: int, next_batch: int, row: dict[str, float], best: bool) -> None:
        """After a validation: the model directory and ``best.pt`` when ``best``, then
        ``latest.pt`` and the metrics; then the caller's ``on_epoch_end``."""
        ckpt = self.checkpoint(next_epoch, next_batch, row["elapsed_s"])
        if self.rank == 0:
            saved = ckpt.to_dict()
            if best:
                write_model_dir(
                    self.output,
                    self.model,
                    {**self.train_record, "step": self.global_step},
                    material=self.material,
                )
                save_torch(saved, self.output / BEST_FILE)
            save_torch(saved, self.output / LATEST_FILE)
            _write_metrics(self.output, self.history, None)
            log.info("step %d: %s", self.global_step, row)
        if self.on_epoch_end is not None:
            self.on_epoch_end(next_epoch, row)

    def validate_start(self) -> None:
        """A fine-tune's step-0 row: RUN's weights scored on the new and old validation
        splits before any step, kept as the best so far (:mod:`models.fine_tune`)."""
        val_start = time.perf_counter()
        figures = self.figures(float(self.optimizer.param_groups[0]["lr"]))
        now = time.perf_counter()
        row = {
            "epoch": 0.0,
            "step": 0.0,
            **figures,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "seconds": now - self.last_eval,
            "val_seconds": now - val_start,
            "elapsed_s": self.elapsed_before + self.clock.elapsed(),
        }
        self.last_eval = now
        self.history.append(row)
        self.best_score, self.best_epoch, self.bad_evals = self.task.score(row), 0.0, 0
        log.info("fine-tune start (RUN's weights): %s", row)
        self.save(0, 0, row, True)

    def validate(self, epoch: int, done: int, stop: str | None, step_lr: float) -> str | None:
        """Validate after batch ``done`` of ``epoch``, keep the best model, write the
        checkpoint and metrics; returns ``stop``, or "patience" when that has run out."""
        full = done == self.steps_per_epoch
        next_epoch, next_batch = (epoch + 1, 0) if full else (epoch, done)
        val_start = time.perf_counter()
        figures = self.figures(step_lr)
        now = time.perf_counter()
        row = {
            "epoch": epoch + done / self.steps_per_epoch,
            "step": float(self.global_step),
            "train_loss": float(np.mean(self.losses)),
            **figures,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "seconds": now - self.last_eval,  # training and this validation
            "val_seconds": now - val_start,
            "elapsed_s": self.elapsed_before + self.clock.elapsed(),
        }
        self.last_eval, self.losses = now, []
        self.history.append(row)
        score = self.task.score(row)
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_evals = score, row["epoch"], 0
        else:
            self.bad_evals += 1
        self.bar.set_postfix(
            loss=f"{row['train_loss']:.3f}",
            **{self.task.selection: f"{figures[self.task.selection]:{self.task.fmt}}"},
        )
        if self.budgeted and stop is None:
            self.refit()  # the rate now includes a validation's cost
        self.save(next_epoch, next_batch, row, improved)
        if stop is None and self.cfg.patience and self.bad_evals >= self.cfg.patience:
            log.info("no better %s for %d validations: stopping", self.task.label, self.bad_evals)
            return "patience"
        return stop


def train(
    pairs_path: Path,
    output: Path,
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    model_config: ModelConfig | None = None,
    fine_tune: FineTune | None = None,
) -> TrainResult:
    """Train on the train split, select on the validation split, write the model directory.

    ``model_config`` overrides the named architecture (tests use tiny ones); ``on_epoch_end``
    is called after each validation's checkpoint is on disk (a fine-tune's step-0 validation
    included), with the whole epochs done so far. ``fine_tune`` starts the run from a trained
    model (:class:`FineTune`): its architecture and task replace ``cfg.model`` and
    ``cfg.task``, and ``cfg.lr`` None means the fine-tune's default rate; ``resume`` of a
    fine-tune's own output continues it as its ``latest.pt`` records.
    """
    clock = BudgetClock.starting_now(cfg.time_budget_min)
    output = Path(output)
    latest = output / LATEST_FILE
    if fine_tune is not None:
        _check_fine_tune_output(fine_tune, output, resume)
    resumed: Checkpoint | None = None
    if resume:
        if not latest.is_file():
            raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
        # On the CPU: restoring copies each tensor to the model's and optimizer's device.
        resumed = Checkpoint.from_dict(torch.load(latest, map_location="cpu", weights_only=True))
    elif latest.exists():
        raise FileExistsError(f"{output} already holds a run; pass --resume or a new --output")
    start: _FineTuneStart | None = None
    if fine_tune is not None:
        schedule_lr = replace(cfg, lr=None).base_lr
        start = _start_fine_tune(
            fine_tune, Path(pairs_path), cfg.schedule, schedule_lr, model_config
        )
    elif resumed is not None and resumed.fine_tune is not None:
        start = _resume_fine_tune(resumed.fine_tune, latest, model_config)
    if start is not None:
        lr = start.lr if cfg.lr is None else cfg.lr
        cfg = replace(cfg, task=start.kind, model=start.arch.name, lr=lr)
        start.record["lr"] = cfg.base_lr
        arch = start.arch
    else:
        arch = model_config or get_config(cfg.model)
    pairs = load_pairs(pairs_path)
    if start is not None:
        start.check_pairs(pairs, f"--pairs {pairs_path}")
    elif pairs.spectra.shape[2] != arch.num_wavelengths:
        arch = replace(arch, num_wavelengths=int(pairs.spectra.shape[2]))
    if pairs.geometry.shape[1] != arch.image_size:
        raise ValueError(
            f"{pairs_path}: geometry is {pairs.geometry.shape[1]} px, the model expects "
            f"{arch.image_size}"
        )
    train_split, val_split = _Split.of(pairs, TRAIN), _Split.of(pairs, VAL)
    if len(val_split) == 0:
        raise ValueError(f"{pairs_path} has no validation pairs (split code {VAL})")
    identity = data_identity(pairs_path, (train_split.arrays(), val_split.arrays()))
    pool, pool_old, old_fraction, drawn = train_split, 0, 0.0, 0
    if start is not None and start.old_train is not None and start.record["old_fraction"] > 0:
        old_fraction = float(start.record["old_fraction"])
        pool_old = len(start.old_train)
        pool = _Split.concat(train_split, start.old_train)
        drawn = old_rows_per_epoch(len(train_split), pool_old, old_fraction)
        start.record["old_pairs_per_epoch"] = drawn
        share = drawn / (len(train_split) + drawn)
        if share < old_fraction - 0.5 / (len(train_split) + drawn):
            log.warning(
                "old pairs %s hold %d training pairs: all of them each epoch, a share of "
                "%.3f, not %g",
                start.record["old_pairs"]["path"], pool_old, share, old_fraction,
            )  # fmt: skip
    epoch_size = len(train_split) + drawn  # the length of every epoch's epoch_rows

    rank, world, local_rank = ranks.join_process_group()
    if cfg.batch_size % world:
        raise ValueError(f"batch-size={cfg.batch_size} must be divisible by {world} ranks")
    per_rank = epoch_size // world
    local_batch = min(cfg.batch_size // world, per_rank)
    if local_batch < 2:
        raise ValueError(
            f"{pairs_path} has {len(train_split)} training pairs: too few for a batch on "
            f"{world} rank(s)"
        )
    steps_per_epoch = per_rank // local_batch
    data = {**identity, "material": pairs.material}
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    task = task_for(cfg.task)
    if start is not None:
        norm = start.norm  # RUN's: FineTune's docstring says why
    else:
        norm = Normalization.fit(train_split.params.numpy(), train_split.spectra.numpy())
    model = task.build(arch, norm).to(device)
    if start is not None and start.weights is not None:
        model.load_state_dict(start.weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    horizon = Horizon(steps_per_epoch * cfg.epochs, cfg.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(cfg.schedule, step, horizon.steps, horizon.warmup)
    )
    run = _Run(
        cfg=cfg,
        arch=arch,
        output=output,
        material=pairs.material,
        train_split=pool,
        val_split=val_split,
        model=model,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        horizon=horizon,
        clock=clock,
        aug_rng=torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank + 1),
        sampler=DistributedSampler(
            _Indices(epoch_size), world, rank, shuffle=True, seed=cfg.seed, drop_last=True
        ),
        rank=rank,
        world=world,
        device=device,
        local_batch=local_batch,
        steps_per_epoch=steps_per_epoch,
        data=data,
        recipe=run_recipe(cfg, arch),
        settings=run_settings(cfg, data, world),
        on_epoch_end=on_epoch_end,
        pool_new=len(train_split),
        pool_old=pool_old,
        old_fraction=old_fraction,
        old_val=None if start is None else start.old_val,
        fine_tune=None if start is None else start.record,
    )
    start_epoch, start_batch = 0, 0
    if resumed is not None:
        if resumed.verified:
            changed = check_resume(resumed, latest, run.recipe, data, run.settings)
            run.resumes = [*resumed.resumes, {"step": resumed.global_step, "changed": changed}]
            for name, (old, new) in changed.items():
                log.warning("resuming %s with %s %r (was %r)", output, name, new, old)
        else:  # written before checkpoints recorded their data and recipe
            if resumed.model_name != arch.name:
                raise ValueError(
                    f"{latest} was trained as {resumed.model_name!r}, not {arch.name!r}"
                )
            log.warning("%s records no data or recipe: resuming unverified", latest)
            run.resumes = [{"step": resumed.global_step, "changed": {}, "verified": False}]
        run.restore(resumed)
        start_epoch, start_batch = resumed.epoch, resumed.batch
        log.info("resumed %s at step %d (epoch %d)", output, run.global_step, start_epoch)

    run.net = model
    if world > 1:
        run.net = DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    run.loss_fn = task.loss(cfg.gather_with_grad, norm)
    run.train_record = {
        "train": cfg.to_dict(),
        "pairs": str(pairs_path),
        "data": data,
        "wavelength_nm": [float(w) for w in pairs.wavelength_nm],
        "world_size": world,
        "resumes": run.resumes,
    }
    if start is not None:
        run.train_record.update(
            {
                "fine_tuned_from": start.record["from"],
                "old_pairs": start.record["old_pairs"],
                "old_fraction": start.record["old_fraction"],
                "old_pairs_per_epoch": start.record["old_pairs_per_epoch"],
            }
        )
    if resumed is not None:
        # From here on the resumed run's settings apply, so latest.pt and config.json say so
        # before the first step, whether or not a step is left to take (config.json's model
        # stays the one taken at its recorded step).
        ranks.barrier(world)  # every rank has read latest.pt before rank 0 replaces it
        if rank == 0:
            record = {
                "data": data,
                "recipe": run.recipe,
                "settings": run.settings,
                "resumes": run.resumes,
            }
            save_torch({**resumed.to_dict(), **record}, latest)
            if (output / CONFIG_FILE).is_file():
                saved = read_config(output)
                saved["train"] = {**run.train_record, "step": saved.get("train", {}).get("step")}
                save_json(saved, output / CONFIG_FILE)
    run.bar = tqdm(
        total=run.total_steps,
        initial=run.global_step,
        desc="train",
        unit="step",
        disable=not progress or rank != 0,
    )
    run.loop_start = run.last_eval = time.perf_counter()
    if fine_tune is not None:
        run.validate_start()
    stop_reason = "epochs"
    for epoch in range(start_epoch, cfg.epochs):
        stop = run.train_one_epoch(epoch, start_batch if epoch == start_epoch else 0)
        if stop is not None:
            stop_reason = stop
            break
    run.bar.close()
    if rank == 0 and output.is_dir():
        _write_metrics(
            output, run.history, run.stop_record(stop_reason, STOP_MESSAGES[stop_reason])
        )
    log.info("stopped: %s", STOP_MESSAGES[stop_reason])
    return TrainResult(
        run.history,
        task.value(run.best_score),
        run.best_epoch,
        stop_reason == "patience",
        stop_reason,
        run.global_step,
        task.selection,
    )

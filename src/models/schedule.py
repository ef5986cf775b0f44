"""The learning-rate schedule of a training run, and the horizon a time budget fits it to.

A cosine schedule cut off at an arbitrary step never anneals, so under a wall-clock budget the
horizon (the step the schedule ends at) is fitted to the steps the budget allows at the rate
measured so far, and refitted as the rate is known better (``models.train``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

SCHEDULES = ("cosine", "moclip")
# MOCLIP steps its learning rate 1e-4 → 5e-5 → 3e-5; the paper gives the rates, not where the
# steps fall, so they sit at half and four fifths of the run.
MOCLIP_STAGES = ((0.0, 1.0), (0.5, 0.5), (0.8, 0.3))


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
class Horizon:
    """The schedule's horizon in optimizer steps; mutable because a time budget refits it."""

    steps: int
    warmup_fraction: float

    @property
    def warmup(self) -> int:
        return int(self.warmup_fraction * self.steps)


@dataclass(frozen=True)
class BudgetClock:
    """Wall clock of one ``train()`` call against its optional budget."""

    start: float
    budget_s: float | None

    @staticmethod
    def starting_now(budget_min: float | None) -> BudgetClock:
        return BudgetClock(time.perf_counter(), None if budget_min is None else 60 * budget_min)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def passed(self) -> bool:
        return self.budget_s is not None and self.elapsed() >= self.budget_s

    def remaining(self) -> float:
        return math.inf if self.budget_s is None else self.budget_s - self.elapsed()

"""Splitting a frame into row bands that render on threads.

numpy releases the GIL in gathers and arithmetic on large arrays, so two threads halve a
frame's render time on two cores; the split is by rows so each band is contiguous in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def row_blocks(rows: int, count: int) -> list[slice]:
    """``count`` contiguous row ranges covering ``rows`` (fewer when there are fewer rows)."""
    edges = np.linspace(0, rows, max(1, min(count, rows)) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def run_blocks(executor: Executor | None, work: Callable[[T], None], items: Iterable[T]) -> None:
    """Run ``work`` on every item, on the executor's threads when there is one."""
    if executor is None:
        for item in items:
            work(item)
        return
    for future in [executor.submit(work, item) for item in items]:
        future.result()

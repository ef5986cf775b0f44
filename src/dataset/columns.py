"""Shape and dtype checks for the per-pad columns every pad-indexed file carries."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_pad_columns(record: object, columns: Mapping[str, type[np.generic]]) -> int:
    """The pad count N, after checking every named column of ``record`` is (N,) of its dtype.

    The first column sets N; a mismatch is a one-line ValueError naming the column.
    """
    first = np.asarray(getattr(record, next(iter(columns))))
    n = first.shape[0] if first.ndim == 1 else -1
    for name, dtype in columns.items():
        col = getattr(record, name)
        if col.shape != (n,) or col.dtype != dtype:
            raise ValueError(
                f"{name} must be ({n},) {np.dtype(dtype).name}, got {col.shape} {col.dtype}"
            )
    return n

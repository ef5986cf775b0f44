"""A pairs file's split as tensors: the rows training steps on and validation scores.

Its own module so that the training harness (:mod:`models.train`), fine-tuning
(:mod:`models.fine_tune`) and the tasks' validation (:mod:`models.tasks`) share it without
importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dataset.pairs_file import Pairs


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

    @staticmethod
    def concat(first: _Split, second: _Split) -> _Split:
        """``first``'s rows, then ``second``'s: a fine-tune's pool of new and old pairs."""
        return _Split(
            torch.cat([first.geometry, second.geometry]),
            torch.cat([first.params, second.params]),
            torch.cat([first.spectra, second.spectra]),
            np.concatenate([first.design_id, second.design_id]),
        )

    def __len__(self) -> int:
        return int(self.geometry.shape[0])

    def arrays(self) -> tuple[Any, ...]:
        """Its arrays as numpy, the order ``models.checkpoint.data_identity`` hashes them in."""
        return (self.geometry.numpy(), self.params.numpy(), self.spectra.numpy(), self.design_id)

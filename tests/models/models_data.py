"""Small synthetic pairs files shared by the model tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import torch

from dataset.pairs_file import write_pairs
from models.config import get_config
from models.model import ContrastiveModel
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs


def write_synthetic(folder: Path, count: int = 200, noise: float = 0.01, seed: int = 0) -> Path:
    """A pairs file of ``count`` designs; with ``noise=0`` it is the truth file of the same
    designs (same seed and count, same order)."""
    path = folder / f"pairs_{count}_{noise}_{seed}.h5"
    if not path.exists():
        write_pairs(path, make_pairs(SyntheticPairsConfig(count=count, seed=seed, noise=noise)))
    return path


def untrained_model(seed: int) -> ContrastiveModel:
    """A small model whose encoder depends on (period, thickness): FiLM's last layers start at
    zero (the identity), which would make a swapped or mis-scaled params column invisible."""
    torch.manual_seed(seed)
    model = ContrastiveModel(get_config("metascan-small"))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.5)
    return model

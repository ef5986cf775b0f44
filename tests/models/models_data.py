"""Small synthetic pairs files shared by the model tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

from dataset.pairs_file import write_pairs
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs


def write_synthetic(folder: Path, count: int = 200, noise: float = 0.01, seed: int = 0) -> Path:
    """A pairs file of ``count`` designs; with ``noise=0`` it is the truth file of the same
    designs (same seed and count, same order)."""
    path = folder / f"pairs_{count}_{noise}_{seed}.h5"
    if not path.exists():
        write_pairs(path, make_pairs(SyntheticPairsConfig(count=count, seed=seed, noise=noise)))
    return path

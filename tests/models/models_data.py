"""Small synthetic pairs files shared by the model tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

from dataset.pairs_file import write_pairs
from models.config import GeometryEncoderConfig, ModelConfig, SpectraEncoderConfig
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs


def write_synthetic(folder: Path, count: int = 200, noise: float = 0.01, seed: int = 0) -> Path:
    """A pairs file of ``count`` designs; with ``noise=0`` it is the truth file of the same
    designs (same seed and count, same order)."""
    path = folder / f"pairs_{count}_{noise}_{seed}.h5"
    if not path.exists():
        write_pairs(path, make_pairs(SyntheticPairsConfig(count=count, seed=seed, noise=noise)))
    return path


# A few thousand weights: trains its 5 steps an epoch on the 200-design file in well under a
# second, for tests about what a run records rather than what it learns.
TINY = ModelConfig(
    name="tiny-test",
    geometry=GeometryEncoderConfig(
        stem="patchify", stem_patch=8, stem_width=4, widths=(8,), depths=(1,), param_hidden=8
    ),
    spectra=SpectraEncoderConfig(hidden=(16,)),
    embed_dim=16,
)

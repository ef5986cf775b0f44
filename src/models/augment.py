"""Physics-aware augmentations: changes to a pair that leave the physics the same.

* A periodic metasurface is the same surface under any in-plane translation, so a circular shift
  of the unit-cell image keeps its spectra exactly.
* Mirroring the cell about its diagonal (transposing the [y, x] image) exchanges the roles of x
  and y polarization, so the spectra's x and y rows swap.

Both act per sample and draw from an explicit ``torch.Generator`` so a seeded run is repeatable
and a resumed run continues the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run during training (never during evaluation)."""

    circular_shift: bool = True
    transpose: bool = True
    transpose_probability: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.transpose_probability <= 1:
            raise ValueError(f"transpose_probability={self.transpose_probability} not in [0, 1]")


def random_circular_shift(image: Tensor, generator: torch.Generator) -> Tensor:
    """Each (B, S, S) image rolled by its own random (dy, dx); the batched form of
    ``torch.roll`` per sample, done with one gather."""
    b, h, w = image.shape
    dy = torch.randint(0, h, (b,), generator=generator).to(image.device)
    dx = torch.randint(0, w, (b,), generator=generator).to(image.device)
    rows = (torch.arange(h, device=image.device)[None, :] - dy[:, None]) % h  # (B, H)
    cols = (torch.arange(w, device=image.device)[None, :] - dx[:, None]) % w  # (B, W)
    batch = torch.arange(b, device=image.device)[:, None, None]
    return image[batch, rows[:, :, None], cols[:, None, :]]


def random_transpose(
    image: Tensor, spectra: Tensor, generator: torch.Generator, probability: float = 0.5
) -> tuple[Tensor, Tensor]:
    """With ``probability`` per sample: image (B, S, S) transposed and spectra (B, 2, W) x/y
    rows swapped."""
    flip = torch.rand(image.shape[0], generator=generator).to(image.device) < probability
    image = torch.where(flip[:, None, None], image.transpose(1, 2), image)
    spectra = torch.where(flip[:, None, None], spectra.flip(1), spectra)
    return image, spectra


def augment(
    image: Tensor, spectra: Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Apply the switched-on augmentations in a fixed order (shift, then transpose)."""
    if cfg.circular_shift:
        image = random_circular_shift(image, generator)
    if cfg.transpose:
        image, spectra = random_transpose(image, spectra, generator, cfg.transpose_probability)
    return image, spectra

"""What an optimizer maximizes for a candidate against its target: the latent similarity of
the contrastive model (MOCLIP), or minus the weighted MSE the forward surrogate predicts.

Both score candidates in batches of exact rasters (``score``: what the swarm and every final
re-score use) and, for the hybrid's gradient steps, soft rasters as tensors (``soft_score``,
differentiable in the image). ``queries`` hold one row per candidate: the target's spectrum
latent (E,) for the similarity, its spectrum and band weights stacked (2, 2, W) for the MSE.
Only the similarity gives a latent, which is what the support term (the distance from the
designs the model has seen) measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from torch import Tensor, nn

from dataset.colorimetry import Colorimetry, delta_e
from dataset.targets_file import weighted_mse
from models.model import ContrastiveModel
from models.surrogate import ForwardSurrogate

Encoder = Callable[[NDArray[np.bool_], NDArray[np.float64]], NDArray[np.float32]]
Predictor = Callable[[NDArray[np.bool_], NDArray[np.float64]], NDArray[np.float32]]


class Objective(Protocol):
    @property
    def name(self) -> str:
        """What is maximized, as a person reads it."""

    def score(
        self, images: NDArray[np.bool_], params_um: NDArray[np.float64], queries: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32] | None]:
        """(N,) scores, higher better, and the (N, E) latents when the objective has them."""

    def soft_score(self, images: Tensor, params_um: Tensor, queries: Tensor) -> Tensor:
        """(N,) differentiable scores of (N, S, S) soft images."""

    def network(self) -> nn.Module:
        """The network gradients flow through (its weights are held still meanwhile)."""


@dataclass(frozen=True, eq=False)
class LatentSimilarity:
    """Cosine similarity of the geometry latent and the target's spectrum latent."""

    encoder: Encoder
    model: ContrastiveModel | None = None  # needed for soft_score only
    name: str = "latent similarity"

    def score(
        self, images: NDArray[np.bool_], params_um: NDArray[np.float64], queries: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32] | None]:
        latent = self.encoder(images, params_um)
        return np.einsum("ne,ne->n", latent, queries).astype(np.float64), latent

    def soft_score(self, images: Tensor, params_um: Tensor, queries: Tensor) -> Tensor:
        z = self.network().encode_geometry(images[:, None], params_um)
        return (z * queries).sum(dim=1)

    def network(self) -> ContrastiveModel:
        if self.model is None:
            raise ValueError("gradient steps need the contrastive model, not only an encoder")
        return self.model


@dataclass(frozen=True, eq=False)
class PredictedMSE:
    """Minus the weighted MSE between the surrogate's predicted spectra and the target's."""

    predictor: Predictor
    model: ForwardSurrogate | None = None  # needed for soft_score only
    name: str = "predicted weighted MSE"

    @staticmethod
    def queries(spectra: NDArray[np.floating], weight: NDArray[np.floating]) -> NDArray[Any]:
        """(T, 2, 2, W): each target's spectrum and weights, as one query row."""
        return np.stack([spectra, weight], axis=1).astype(np.float32)

    def score(
        self, images: NDArray[np.bool_], params_um: NDArray[np.float64], queries: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32] | None]:
        predicted = self.predictor(images, params_um)
        return -weighted_mse(predicted, queries[:, 0], queries[:, 1]), None

    def soft_score(self, images: Tensor, params_um: Tensor, queries: Tensor) -> Tensor:
        predicted = self.network()(images, params_um)
        target, weight = queries[:, 0], queries[:, 1]
        error: Tensor = (weight * (predicted - target) ** 2).sum(dim=(1, 2))
        return -error / weight.sum(dim=(1, 2))

    def network(self) -> ForwardSurrogate:
        if self.model is None:
            raise ValueError("gradient steps need the surrogate model, not only a predictor")
        return self.model


def frozen(objective: Objective) -> list[nn.Parameter]:
    """Switch off the gradients of the objective's network; returns what to switch back on."""
    params = [p for p in objective.network().parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    return params


def thaw(params: list[nn.Parameter]) -> None:
    for p in params:
        p.requires_grad_(True)


@dataclass(frozen=True, eq=False)
class ColourDifference:
    """Minus the CIEDE2000 between the colour of the predicted spectrum under the bench's lamp
    and the target colour (queries: (N, 3) CIELAB). colour-science computes it in numpy, so it
    steers gradient-free search only (PSO, retrieval); a soft score would need the colour
    pipeline rewritten in torch."""

    predictor: Predictor
    colorimetry: Colorimetry
    name: str = "CIEDE2000 of the predicted colour"

    def score(
        self, images: NDArray[np.bool_], params_um: NDArray[np.float64], queries: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32] | None]:
        lab = self.colorimetry.lab_of_spectra(self.predictor(images, params_um))
        return -delta_e(lab, queries), None

    def soft_score(self, images: Tensor, params_um: Tensor, queries: Tensor) -> Tensor:
        raise ValueError("the colour difference has no gradient here; search it with PSO")

    def network(self) -> nn.Module:
        raise ValueError("the colour difference has no network to step through")

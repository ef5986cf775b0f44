"""What a training run learns (``TrainConfig.task``): the contrastive pair of towers, or the
forward surrogate. Each task builds its network, computes a batch's loss, and validates; the
harness (:mod:`models.train`) does everything else the same way for both: sampling, schedule,
budget, checkpoints, resume, DDP, divergence.

The forward pass runs under the caller's autocast and the loss after it in float32
(:meth:`BatchLoss.forward` then :meth:`BatchLoss.__call__`): in bf16 only activations are
rounded, never the logits of the contrastive loss or the squared errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from models.config import ModelConfig
from models.loss import ClipLoss
from models.model import LOGIT_SCALE_MAX, ContrastiveModel, Normalization
from models.retrieval import cosine_scores, embed, nonfinite_rows, ranks_of_truth, recall_at
from models.surrogate import ForwardSurrogate

if TYPE_CHECKING:
    from models.splits import _Split

TASKS = ("contrastive", "surrogate")


class Diverged(ValueError):
    """Training produced a non-finite loss, weights or embeddings (a one-line message)."""


Outputs = tuple[Tensor, ...]


class BatchLoss(Protocol):
    def forward(self, net: nn.Module, image: Tensor, params_um: Tensor, spectra: Tensor) -> Outputs:
        """The network's outputs for one batch (run under the caller's autocast)."""

    def __call__(self, outputs: Outputs, spectra: Tensor) -> Tensor:
        """The scalar loss of those outputs, in float32."""


class ContrastiveLoss:
    """CLIP's symmetric cross-entropy over the (gathered) batch of both towers' features."""

    def __init__(self, gather_with_grad: bool = True) -> None:
        self.clip = ClipLoss(gather_with_grad)

    def forward(self, net: nn.Module, image: Tensor, params_um: Tensor, spectra: Tensor) -> Outputs:
        g, s, scale = net(image, params_um, spectra)
        return g, s, scale

    def __call__(self, outputs: Outputs, spectra: Tensor) -> Tensor:
        g, s, scale = outputs
        loss: Tensor = self.clip(g.float(), s.float(), scale.float())
        return loss


class SurrogateLoss:
    """Mean squared error of the predicted spectra in transmission units, over the training
    split's mean band variance (a scale-free number near 1 for a network that predicts the
    mean spectrum, so a learning rate means about what it means for the contrastive loss)."""

    def __init__(self, norm: Normalization) -> None:
        self.scale = max(float(np.mean(np.square(norm.spectra_std))), 1e-8)

    def forward(self, net: nn.Module, image: Tensor, params_um: Tensor, spectra: Tensor) -> Outputs:
        return (net(image, params_um),)

    def __call__(self, outputs: Outputs, spectra: Tensor) -> Tensor:
        loss: Tensor = ((outputs[0].float() - spectra.float()) ** 2).mean() / self.scale
        return loss


@torch.no_grad()
def predict_spectra(
    model: ForwardSurrogate, geometry: Tensor, params_um: Tensor, batch_size: int = 512
) -> Tensor:
    """(N, 2, W) predicted spectra on the CPU, in eval mode and fp32."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [
        model(geometry[i : i + batch_size].to(device), params_um[i : i + batch_size].to(device))
        for i in range(0, geometry.shape[0], batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0, 2, model.cfg.num_wavelengths)


@dataclass(frozen=True)
class Task:
    """One task's choices: its network, its loss, and the validation figure that picks the
    best checkpoint (``selection``, better when ``higher_is_better``)."""

    name: str
    selection: str
    higher_is_better: bool
    label: str  # the selection figure, as a person reads it
    fmt: str  # and how it is printed

    def build(self, arch: ModelConfig, norm: Normalization) -> ContrastiveModel | ForwardSurrogate:
        if self.name == "surrogate":
            return ForwardSurrogate(arch, norm)
        return ContrastiveModel(arch, norm)

    def loss(self, gather_with_grad: bool, norm: Normalization) -> BatchLoss:
        if self.name == "surrogate":
            return SurrogateLoss(norm)
        return ContrastiveLoss(gather_with_grad)

    def validate(self, model: nn.Module, split: _Split, device: torch.device) -> dict[str, float]:
        """The validation row's figures; ``Diverged`` when an output is not finite."""
        if isinstance(model, ForwardSurrogate):
            return surrogate_validation(model, split)
        assert isinstance(model, ContrastiveModel)
        recall = validation_recall(model, split, device)
        temperature = 1 / model.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX).item()
        return {"val_r1": recall[1], "val_r5": recall[5], "temperature": float(temperature)}

    def score(self, row: dict[str, float]) -> float:
        """The selection figure as a number to maximize."""
        value = row[self.selection]
        return value if self.higher_is_better else -value

    def value(self, score: float) -> float:
        """The inverse of :meth:`score`: the figure itself."""
        return score if self.higher_is_better else -score


def task_for(name: str) -> Task:
    if name == "surrogate":
        return Task("surrogate", "val_mse", False, "val MSE", ".3e")
    if name == "contrastive":
        return Task("contrastive", "val_r1", True, "val R@1", ".3f")
    raise ValueError(f"task {name!r} not in {', '.join(TASKS)}")


def validation_recall(
    model: ContrastiveModel, split: _Split, device: torch.device
) -> dict[int, float]:
    """Spectrum → geometry R@1 and R@5 over the whole validation split; ``Diverged`` when an
    embedding is not finite (its scores would mean nothing)."""
    g, s = embed(model, split.geometry, split.params, split.spectra, device=device)
    bad = nonfinite_rows(g, s)
    if bad is not None:
        raise Diverged(f"validation {bad} are not finite")
    ranks = ranks_of_truth(cosine_scores(s, g), split.design_id, split.design_id)
    return recall_at(ranks, (1, 5))


def surrogate_validation(model: ForwardSurrogate, split: _Split) -> dict[str, float]:
    """The validation split's per-pair MSE (unit weights: the targets file's weighted MSE
    when every band counts), as its mean and median, and the RMSE of the mean."""
    predicted = predict_spectra(model, split.geometry, split.params)
    if not bool(torch.isfinite(predicted).all()):
        bad = int((~torch.isfinite(predicted)).flatten(1).any(dim=1).sum())
        raise Diverged(f"{bad} of {predicted.shape[0]} validation predictions are not finite")
    per_pair = ((predicted - split.spectra) ** 2).flatten(1).mean(dim=1).numpy()
    mean = float(np.mean(per_pair))
    return {"val_mse": mean, "val_mse_median": float(np.median(per_pair)), "val_rmse": mean**0.5}

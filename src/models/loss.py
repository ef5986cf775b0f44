"""The CLIP loss, with features gathered from every rank so negatives are the global batch.

Under DDP each rank computes the loss over the whole gathered batch. With ``gather_with_grad``
the all-gather's backward sums every rank's gradient into the local features (one copy per
rank), and DDP then averages parameter gradients over ranks: the two factors of world size
cancel, so one step equals the single-process step on the global batch (tested). Without it,
only the local slice of the gathered features carries gradient (open_clip's other mode).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional


def gather_features(
    geometry: Tensor, spectra: Tensor, gather_with_grad: bool = True
) -> tuple[Tensor, Tensor]:
    """Concatenate both feature sets over ranks (rank order); a no-op when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return geometry, spectra
    if gather_with_grad:
        from torch.distributed.nn.functional import all_gather

        return (
            torch.cat(all_gather(geometry)),  # type: ignore[no-untyped-call]
            torch.cat(all_gather(spectra)),  # type: ignore[no-untyped-call]
        )
    world, rank = dist.get_world_size(), dist.get_rank()
    out = []
    for local in (geometry, spectra):
        parts = [torch.zeros_like(local) for _ in range(world)]
        dist.all_gather(parts, local.detach())
        parts[rank] = local
        out.append(torch.cat(parts))
    return out[0], out[1]


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over the similarity matrix: row i's positive is column i."""

    def __init__(self, gather_with_grad: bool = True) -> None:
        super().__init__()
        self.gather_with_grad = gather_with_grad

    def forward(self, geometry: Tensor, spectra: Tensor, logit_scale: Tensor) -> Tensor:
        g, s = gather_features(geometry, spectra, self.gather_with_grad)
        logits = logit_scale * s.float() @ g.float().T  # rows: spectra, columns: geometries
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (
            functional.cross_entropy(logits, labels) + functional.cross_entropy(logits.T, labels)
        ) / 2

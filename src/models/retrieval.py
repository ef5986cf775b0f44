"""Retrieval metrics shared by validation, evaluation and the oracle.

A hit is judged by ``design_id``, not by row: replicas of one design share a geometry, so
retrieving any replica's geometry for a spectrum is correct, and counting it wrong would cap
R@1 below 1 for reasons that have nothing to do with the model.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from models.model import ContrastiveModel


@torch.no_grad()
def embed(
    model: ContrastiveModel,
    geometry: Tensor,
    params_um: Tensor,
    spectra: Tensor,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Unit geometry and spectra features (N, D) on the CPU, encoded in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    gs, ss = [], []
    for start in range(0, geometry.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        gs.append(model.encode_geometry(geometry[sl].to(device), params_um[sl].to(device)).cpu())
        ss.append(model.encode_spectra(spectra[sl].to(device)).cpu())
    model.train(was_training)
    dim = model.cfg.embed_dim
    empty = torch.empty(0, dim)
    return (torch.cat(gs) if gs else empty), (torch.cat(ss) if ss else empty)


def nonfinite_rows(geometry: Tensor, spectra: Tensor) -> str | None:
    """How many rows of which side hold a NaN/inf (``"3 of 20 geometry embeddings"``), or
    None when every embedding is finite: scores computed from such rows mean nothing."""
    sides = []
    for side, emb in (("geometry", geometry), ("spectra", spectra)):
        bad = int((~torch.isfinite(emb)).any(dim=1).sum()) if emb.numel() else 0
        if bad:
            sides.append(f"{bad} of {emb.shape[0]} {side} embeddings")
    return " and ".join(sides) or None


def ranks_of_truth(
    scores: Tensor,
    query_ids: NDArray[np.int64],
    gallery_ids: NDArray[np.int64],
    chunk: int = 512,
) -> NDArray[np.int64]:
    """For each query row of ``scores`` (Q, G), higher is better, the 1-based rank of the
    best-scoring gallery item with the query's design_id, counted pessimistically: every other
    item scoring at least as high ranks ahead of it, so ties count against the query (a model
    whose scores are all equal ranks every truth last, not first), a NaN score of another item
    counts as +inf and a NaN score of the truth as -inf. A metric must never credit a model with
    what it did not compute: with NaN compared as ``>=`` (always false), a diverged model would
    rank every truth first and score R@1 = 1.

    Queries go ``chunk`` rows at a time: a 10k x 10k gallery in one piece makes several
    800 MB temporaries, which costs more in memory traffic than the comparisons themselves."""
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be >= 1")
    q = torch.as_tensor(query_ids)
    g = torch.as_tensor(gallery_ids)
    out = torch.empty(q.shape[0], dtype=torch.int64)
    for start in range(0, q.shape[0], chunk):
        sl = slice(start, start + chunk)
        block = scores[sl]
        match = q[sl, None] == g[None, :]
        nan = torch.isnan(block)
        true_scores = torch.where(match & ~nan, block, -torch.inf)
        best_true = true_scores.max(dim=1).values
        others = torch.where(nan, torch.inf, block)
        # Every non-matching item scoring at least as high as the best match ranks ahead of it.
        out[sl] = ((others >= best_true[:, None]) & ~match).sum(dim=1) + 1
    ranks: NDArray[np.int64] = out.numpy().astype(np.int64)
    return ranks


def recall_at(ranks: NDArray[np.int64], ks: tuple[int, ...] | range) -> dict[int, float]:
    """R@K for each K: the fraction of queries whose truth ranks within the top K."""
    if ranks.size == 0:
        return {int(k): float("nan") for k in ks}
    return {int(k): float(np.mean(ranks <= k)) for k in ks}


def cosine_scores(queries: Tensor, gallery: Tensor) -> Tensor:
    """Similarity (Q, G) of unit vectors, computed in float64 so ties are real ties."""
    return queries.double() @ gallery.double().T


def negative_distance(queries: Tensor, gallery: Tensor) -> Tensor:
    """Negative Euclidean distance (Q, G): the oracle's score between raw spectra."""
    return -torch.cdist(queries.double(), gallery.double())

"""Top-k inner-product search of spectrum latents over a sharded probe database (inverse design).

A probe database is a list of shards, each a float32 (n_i, D) array of unit geometry latents; a
query is a unit spectrum latent, so the inner product is the cosine the contrastive model was
trained on. ``ProbeIndex.build`` indexes every shard once; ``ProbeIndex.search`` returns, for
every query, the k best probes across all shards as global row indices (shard offsets added in
shard order) and float32 scores, best first, ties broken by the lower global index.

Why one index per shard, merged, rather than one index over the concatenation: shards arrive
one at a time from the database builds and a concatenation would hold the whole database twice
in memory; for large shards FAISS's flat search costs about the same per comparison either way
(4 shards of 250k were within 7 % of one index of 10^6, inside the noise of a shared 2-core
machine), and the merge is needed anyway for approximate indexes, which are trained per shard.
Small shards pay for the merge: 10^4 probes in 4 shards took ~35 % longer for 10^5 queries
than in one, so a caller with many small shards should concatenate them first.

Exact ties: FAISS keeps the first of equal scores it meets within a shard (its heap compares
strictly), and the merge sorts on (-score, global index), so the result does not depend on
shard boundaries, thread count or the order FAISS lists ties in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")
TRAIN_SEED = 1234  # IVF k-means: sample and clustering seed, so a rebuild gives the same lists
TRAIN_POINTS_PER_LIST = 40  # k-means sample per list: FAISS warns below 39, and the k-means
# cost (the largest part of an ivf build) grows with it


@dataclass(frozen=True)
class SearchConfig:
    """How a ``ProbeIndex`` is built and searched.

    ``flat`` is exact and the default: a database of 10^6 probes is searched by 2,000 queries
    in seconds on two cores, so an approximate index pays off only for larger databases or
    query loads. ``ivf`` scans ``nprobe`` of ``nlist`` k-means lists per shard (``nlist`` None:
    about 4 sqrt(n) per shard); ``hnsw`` walks a graph of ``hnsw_m`` links per node, keeping
    ``ef_search`` candidates. ``threads`` (None: FAISS's default, all cores) is set for the
    duration of each build and search and restored after. Queries go ``query_batch`` at a time
    so that the score blocks FAISS allocates stay bounded whatever the query count. Flat and ivf
    give the same answer at any thread count; an hnsw graph is built by parallel insertion, and
    although rebuilds matched in the tests, only ``threads=1`` guarantees the same graph.
    """

    index: str = "flat"
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    threads: int | None = None
    query_batch: int = 4096

    def __post_init__(self) -> None:
        if self.index not in INDEX_KINDS:
            raise ValueError(f"index={self.index!r} must be one of {', '.join(INDEX_KINDS)}")
        for name in ("nprobe", "hnsw_m", "ef_search", "query_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"nlist={self.nlist} must be >= 1 or None")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads} must be >= 1 or None")


class _Threads:
    """Sets FAISS's OpenMP thread count inside a ``with`` block and restores it after, so one
    index's setting never leaks into another caller's FAISS or torch work."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.saved = 0

    def __enter__(self) -> None:
        if self.threads is not None:
            self.saved = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        if self.threads is not None:
            faiss.omp_set_num_threads(self.saved)


def _check_rows(x: Any, what: str, dim: int | None) -> NDArray[np.float32]:
    """``x`` as a C-contiguous float32 (n, D) array (FAISS needs exactly that), or a ValueError
    naming what is wrong: a NaN/inf row makes every score it enters meaningless."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, the database has {dim}")
    bad = int((~np.isfinite(arr)).any(axis=1).sum()) if arr.size else 0
    if bad:
        raise ValueError(f"{bad} of {arr.shape[0]} {what} rows hold NaN or inf")
    return arr


def _build_shard(x: NDArray[np.float32], config: SearchConfig) -> Any:
    """One FAISS index over one shard."""
    n, dim = x.shape
    index: Any  # FAISS's SWIG classes share no typed base
    if config.index == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.index == "ivf":
        # Default about 4 sqrt(n), but no more lists than a 39-points-per-list training sample
        # allows (FAISS's own floor, below which it warns the centroids are poor).
        nlist = config.nlist if config.nlist is not None else min(round(4 * math.sqrt(n)), n // 39)
        nlist = max(1, min(nlist, n))  # k-means needs at least one point per centroid
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = TRAIN_SEED
        rng = np.random.default_rng(TRAIN_SEED)
        take = min(n, TRAIN_POINTS_PER_LIST * nlist)
        sample = x if take == n else x[np.sort(rng.choice(n, size=take, replace=False))]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = min(config.nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = config.ef_search
    index.add(x)
    return index


def merge_topk(
    parts: Sequence[tuple[NDArray[np.float32], NDArray[np.int64]]], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k best of per-shard results ``(scores, global indices)``, each (Q, k_i), sorted on
    (-score, index). Missing results (index -1, as FAISS pads a list shorter than k) sort last
    and stay -1 / -inf only where all shards together found fewer than k."""
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    missing = ids < 0
    if missing.any():
        scores = np.where(missing, np.float32(-np.inf), scores)
        ids = np.where(missing, np.iinfo(np.int64).max, ids)
    if len(parts) == 1:
        # One shard comes sorted by score already: only rows with an exact tie need the index
        # order, and sorting every row would cost a fifth of a 10^4-probe search.
        rows = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
        if rows.size:
            order = np.lexsort((ids[rows], -scores[rows]), axis=1)
            scores[rows] = np.take_along_axis(scores[rows], order, axis=1)
            ids[rows] = np.take_along_axis(ids[rows], order, axis=1)
        scores, ids = scores[:, :k], ids[:, :k]
    else:
        order = np.lexsort((ids, -scores), axis=1)[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    ids = np.where(ids == np.iinfo(np.int64).max, -1, ids)
    return np.ascontiguousarray(scores, dtype=np.float32), ids.astype(np.int64, copy=False)


class ProbeIndex:
    """Built once from shards, then searched many times.

    Holds one FAISS index per shard (FAISS copies the rows, so the caller's arrays may be freed)
    and the shard offsets that turn shard rows into global indices."""

    def __init__(self, indexes: list[Any], sizes: list[int], dim: int, config: SearchConfig):
        self._indexes = indexes
        self._sizes = sizes
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.dim = dim
        self.config = config

    @staticmethod
    def build(
        shards: Sequence[NDArray[np.float32]], config: SearchConfig = SearchConfig()
    ) -> ProbeIndex:
        """Index every shard. Empty shards are allowed (a build task may find no probe) and
        take no index; an empty database, mixed dimensions or non-finite rows are refused."""
        arrays: list[NDArray[np.float32]] = []
        dim: int | None = None
        for i, shard in enumerate(shards):
            arr = _check_rows(shard, f"shard {i} probe", dim)
            dim = arr.shape[1] if dim is None else dim
            arrays.append(arr)
        total = sum(a.shape[0] for a in arrays)
        if dim is None or total == 0:
            raise ValueError("the probe database is empty: no shard holds a probe")
        indexes, sizes = [], []
        with _Threads(config.threads):
            for arr in arrays:
                indexes.append(_build_shard(arr, config) if arr.shape[0] else None)
                sizes.append(arr.shape[0])
        log.info("indexed %d probes in %d shards (%s)", total, len(arrays), config.index)
        return ProbeIndex(indexes, sizes, dim, config)

    def __len__(self) -> int:
        return int(sum(self._sizes))

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(Q, k) float32 scores and (Q, k) int64 global indices of the k best probes of each
        query, best first, ties by lower index. An approximate index may find fewer than k for
        a query (its visited lists hold fewer probes); the rest is -inf / -1."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must be in [1, {len(self)}] (the number of probes)")
        q = _check_rows(queries, "query", self.dim)
        scores = np.empty((q.shape[0], k), dtype=np.float32)
        ids = np.empty((q.shape[0], k), dtype=np.int64)
        with _Threads(self.config.threads):
            for start in range(0, q.shape[0], self.config.query_batch):
                block = q[start : start + self.config.query_batch]
                parts = []
                for index, size, offset in zip(
                    self._indexes, self._sizes, self._offsets, strict=True
                ):
                    if index is None:
                        continue
                    d, i = index.search(block, min(k, size))
                    parts.append((d, np.where(i >= 0, i + offset, -1)))
                s, i = merge_topk(parts, k)
                scores[start : start + block.shape[0]] = s
                ids[start : start + block.shape[0]] = i
        return scores, ids


def exact_topk_float64(
    queries: NDArray[Any], probes: NDArray[Any], k: int, chunk: int = 1024
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Reference brute force: (Q, k) float64 scores and indices, sorted on (-score, index).

    Scores are computed in float64 from the given values, so the reference does not share
    float32's rounding with the code it checks; queries go ``chunk`` at a time to bound the
    (chunk, n) score block. Slow by design: tests and benchmarks only."""
    q = np.asarray(queries, dtype=np.float64)
    p = np.asarray(probes, dtype=np.float64)
    n = p.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}] (the number of probes)")
    chunk = max(1, min(chunk, 2**24 // n))  # a (chunk, n) float64 block of at most 128 MB
    out_s = np.empty((q.shape[0], k), dtype=np.float64)
    out_i = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk):
        s = q[start : start + chunk] @ p.T
        # Everything tied with the k-th score is kept, then (-score, index) decides: a plain
        # argpartition would drop an arbitrary member of a tie at the boundary.
        kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]
        for r in range(s.shape[0]):
            cand = np.flatnonzero(s[r] >= kth[r])
            order = np.lexsort((cand, -s[r, cand]))[:k]
            out_i[start + r] = cand[order]
            out_s[start + r] = s[r, cand[order]]
    return out_s, out_i


def recall_at_k(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    """Mean over queries of |found ∩ truth| / k, for (Q, k) index arrays (order ignored;
    -1 in ``found`` never matches)."""
    if found.shape != truth.shape or found.ndim != 2:
        raise ValueError(f"found {found.shape} and truth {truth.shape} must be the same (Q, k)")
    if found.size == 0:
        return 1.0
    hits = sum(np.intersect1d(f[f >= 0], t).size for f, t in zip(found, truth, strict=True))
    return float(hits / found.size)

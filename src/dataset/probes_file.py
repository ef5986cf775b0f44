"""The probe database (contract 8 of DESIGN.md): generated designs and their geometry latents.

A probe database is what zero-shot inverse design searches: designs drawn by ``layout``'s
generator under the user's constraints, each with a film thickness and the unit-normalized
geometry latent of one trained model. It is a set of **shard files**; every shard holds some
of the build's **blocks** (block ``b`` of a build is decided by the build's seed and ``b``
alone), so shards built anywhere, in any order, read back as the single build would be.

One shard file (HDF5):

* group ``designs``: a design library (contract 1, :mod:`layout.library_file`);
* ``thickness_nm`` (N,) float64, ``latent`` (N, D) float32 unit rows, ``block`` (N,) int32;
* attributes: ``schema`` = "metascan.probes", ``schema_version``, ``software_version``,
  ``model_identity`` (:func:`models.model_dir.model_identity` of the encoder), ``embed_dim``,
  ``build`` (JSON: seed, count, block size, constraints, exclusions: everything that decides the
  blocks), ``shard_index``, ``shard_count`` and ``blocks`` (the global block numbers held).

Reading a set of shards checks that they come from one build and one model, orders rows by
block, and drops a design met again in a later block (blocks are drawn independently, so the
small share of designs simple enough to be drawn twice, a few % at 10^5 probes, would otherwise
be returned twice by a search). Datasets are written without timestamps, so the same blocks
give the same bytes: a resumed build is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import atomic_output, require_free_space
from common.versioned_hdf5 import decode_attr, open_versioned, write_version
from layout.design import GEOMETRY_COLUMNS, DesignLibrary
from layout.library_file import read_library_group, write_library_header

SCHEMA = "metascan.probes"
SCHEMA_VERSION = 1
_LIBRARY_COLUMNS = ("period_nm", "kind", *GEOMETRY_COLUMNS)


@dataclass(frozen=True, eq=False)
class ProbeBlock:
    """One block of a build: designs, their thickness and latents, in generation order."""

    index: int
    library: DesignLibrary
    thickness_nm: NDArray[np.float64]
    latent: NDArray[np.float32]

    def __post_init__(self) -> None:
        n = len(self.library)
        if self.thickness_nm.shape != (n,) or self.latent.ndim != 2 or self.latent.shape[0] != n:
            raise ValueError(
                f"block {self.index}: {n} designs but thickness {self.thickness_nm.shape} and "
                f"latent {self.latent.shape}"
            )


@dataclass(frozen=True)
class ShardHeader:
    """What a shard says about the build it belongs to."""

    model_identity: str
    embed_dim: int
    build: dict[str, Any]
    shard_index: int
    shard_count: int
    blocks: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class ProbeSet:
    """Shards read as one database: rows in block order, each design once."""

    library: DesignLibrary
    thickness_nm: NDArray[np.float64]
    latent: NDArray[np.float32]
    model_identity: str
    build: dict[str, Any]
    paths: tuple[Path, ...]
    duplicates_dropped: int = 0
    shards_missing: tuple[int, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.library)


def estimate_bytes(count: int, slots: int, embed_dim: int) -> int:
    """An upper bound of a shard's size (uncompressed columns), for the free-space check."""
    per_row = 8 + 8 + 4 + 4 * embed_dim + slots * (1 + 8 * len(GEOMETRY_COLUMNS))
    return count * per_row + (1 << 20)


def write_shard(path: Path, header: ShardHeader, blocks: Sequence[ProbeBlock]) -> None:
    """Write one shard from ``blocks`` (in order) atomically, streaming block by block so the
    whole shard is never held twice in memory."""
    path = Path(path)
    slots = max((b.library.slots for b in blocks), default=1)
    total = sum(len(b.library) for b in blocks)
    require_free_space({path: estimate_bytes(total, slots, header.embed_dim)})
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        write_version(f, SCHEMA, SCHEMA_VERSION)
        f.attrs["model_identity"] = header.model_identity
        f.attrs["embed_dim"] = header.embed_dim
        f.attrs["build"] = json.dumps(header.build, sort_keys=True)
        f.attrs["shard_index"] = header.shard_index
        f.attrs["shard_count"] = header.shard_count
        f.attrs["blocks"] = json.dumps(list(header.blocks))
        g = f.create_group("designs")
        write_library_header(g)
        columns: dict[str, h5py.Dataset] = {}

        def make(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
            chunk_rows = max(1, min(total, 65_536))
            return group.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(chunk_rows, *shape[1:]) if total else None,
                compression="gzip" if total else None,
                compression_opts=1 if total else None,
                shuffle=bool(total),
                track_times=False,
            )

        columns["design_id"] = make(g, "design_id", (total,), np.int64)
        columns["period_nm"] = make(g, "period_nm", (total,), np.float64)
        columns["kind"] = make(g, "kind", (total, slots), np.int8)
        for c in GEOMETRY_COLUMNS:
            columns[c] = make(g, c, (total, slots), np.float64)
        thickness = make(f, "thickness_nm", (total,), np.float64)
        latent = make(f, "latent", (total, header.embed_dim), np.float32)
        block_col = make(f, "block", (total,), np.int32)
        row = 0
        for b in blocks:
            lib = b.library.with_slots(slots)
            stop = row + len(lib)
            if stop == row:
                continue
            columns["design_id"][row:stop] = lib.design_id
            for c in _LIBRARY_COLUMNS:
                columns[c][row:stop] = getattr(lib, c)
            thickness[row:stop] = b.thickness_nm
            latent[row:stop] = b.latent
            block_col[row:stop] = b.index
            row = stop


def read_blocks(path: Path) -> tuple[ShardHeader, list[ProbeBlock]]:
    """A shard's header and its blocks, as written (no reordering, no de-duplication): how a
    build reads back the blocks it has finished."""
    with open_versioned(Path(path), SCHEMA, SCHEMA_VERSION, "probe database") as f:
        header = _header(f)
        lib = read_library_group(f["designs"], f"{path}:/designs")
        thickness = np.asarray(f["thickness_nm"][()], dtype=np.float64)
        latent = np.asarray(f["latent"][()], dtype=np.float32)
        block = np.asarray(f["block"][()], dtype=np.int64)
    out = []
    for b in header.blocks:
        rows = np.flatnonzero(block == b)
        out.append(ProbeBlock(b, lib.take(rows), thickness[rows], latent[rows]))
    return header, out


def _header(f: h5py.File) -> ShardHeader:
    return ShardHeader(
        model_identity=str(decode_attr(f.attrs["model_identity"])),
        embed_dim=int(f.attrs["embed_dim"]),
        build=dict(decode_attr(f.attrs["build"])),
        shard_index=int(f.attrs["shard_index"]),
        shard_count=int(f.attrs["shard_count"]),
        blocks=tuple(int(b) for b in decode_attr(f.attrs["blocks"])),
    )


def read_probes(paths: Sequence[Path], model_identity: str | None = None) -> ProbeSet:
    """Shards of one build as one database; refuses shards of different builds or models, a
    shard given twice, and (with ``model_identity``) a database encoded by another model."""
    if not paths:
        raise ValueError("no probe database given; pass one or more shard files")
    parts: list[tuple[ShardHeader, DesignLibrary, NDArray[Any], NDArray[Any], NDArray[Any]]] = []
    for p in paths:
        path = Path(p)
        with open_versioned(path, SCHEMA, SCHEMA_VERSION, "probe database") as f:
            header = _header(f)
            lib = read_library_group(f["designs"], f"{path}:/designs")
            parts.append(
                (
                    header,
                    lib,
                    np.asarray(f["thickness_nm"][()], dtype=np.float64),
                    np.asarray(f["latent"][()], dtype=np.float32),
                    np.asarray(f["block"][()], dtype=np.int64),
                )
            )
    first = parts[0][0]
    seen_shards: dict[int, Path] = {}
    for (h, *_), p in zip(parts, paths, strict=True):
        for name in ("model_identity", "build", "shard_count", "embed_dim"):
            if getattr(h, name) != getattr(first, name):
                raise ValueError(
                    f"{p} is not a shard of the same build as {paths[0]}: {name} differs "
                    f"({_short(getattr(h, name))} vs {_short(getattr(first, name))})"
                )
        if h.shard_index in seen_shards:
            raise ValueError(
                f"shard {h.shard_index} given twice: {seen_shards[h.shard_index]}, {p}"
            )
        seen_shards[h.shard_index] = Path(p)
    if model_identity is not None and first.model_identity != model_identity:
        raise ValueError(
            f"{paths[0]} was encoded by model {first.model_identity}, not by the given model "
            f"({model_identity}); rebuild the probe database with this model"
        )
    library = DesignLibrary.concatenate([lib for _, lib, *_ in parts])
    thickness = np.concatenate([t for *_, t, _, _ in parts])
    latent = np.concatenate([z for *_, z, _ in parts])
    block = np.concatenate([b for *_, b in parts])
    # Block order, generation order inside a block: the single build's row order.
    order = np.lexsort((np.arange(block.size), block))
    ids = library.design_id[order]
    _, first_rows = np.unique(ids, return_index=True)
    keep = order[np.sort(first_rows)]
    missing = tuple(sorted(set(range(first.shard_count)) - seen_shards.keys()))
    return ProbeSet(
        library=library.take(keep),
        thickness_nm=thickness[keep],
        latent=latent[keep],
        model_identity=first.model_identity,
        build=first.build,
        paths=tuple(Path(p) for p in paths),
        duplicates_dropped=int(order.size - keep.size),
        shards_missing=missing,
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."

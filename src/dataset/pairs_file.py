"""The pairs file (contract 5 of DESIGN.md): geometry-spectrum pairs for model work, in HDF5.

Datasets at the root, N pairs, W wavelengths:

* ``geometry`` (N, S, S) uint8 0/1: the unit-cell raster, [y, x], S = 128 (the MOCLIP
  representation); chunked one pair per chunk and gzip-compressed, binary images shrink ~20x.
* ``params`` (N, 2) float64: period and film thickness in micrometres (MOCLIP's ``params``).
* ``spectra`` (N, 2, W) float32 or float64: zero-order transmission relative to the bare
  substrate (T / T_substrate, 0-1; :mod:`dataset.conventions`), axis 1 = x, y polarization (MOCLIP's ``spectra_x`` and ``spectra_y`` are ``spectra[:, 0]``, ``[:, 1]``).
* ``wavelength_nm`` (W,) float64, strictly increasing (MOCLIP's ``wvl``).
* ``design_id`` (N,) int64: replicas of a design share it.
* ``split`` (N,) uint8: 0 train, 1 validation, 2 test (names in the ``split_names`` attribute);
  small integers rather than strings so a data loader can mask with them directly.

Root attributes: ``schema`` = "metascan.pairs", ``schema_version``, ``software_version``,
``split_names``, ``spectra_convention`` (always ``relative_to_substrate``: what a microscope
measures; a version-1 file without it is read by what its writer is known to have produced),
``material`` (the film every pair was computed with or measured on, :mod:`layout.material`: the
synthetic config's, the scanned chips' manifests', ``a-Si`` for the MOCLIP release; a file
without it, written before materials were recorded, is refused with one line) and the writer's
provenance (scalars as attributes, anything else as JSON).
Splits are grouped by ``design_id``: the writer refuses a file where a design straddles splits,
because a replica in the test split of a design trained on would flatter every metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from dataset import conventions
from layout import material as film

SCHEMA = "metascan.pairs"
SCHEMA_VERSION = 3  # 2: spectra_convention recorded; 3: material recorded
SPLIT_NAMES = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
_RESERVED = {
    "schema",
    "schema_version",
    "software_version",
    "split_names",
    conventions.ATTRIBUTE,
    film.ATTRIBUTE,
}
REWRITE = "this version's metascan sim pairs, curate or pairs import-moclip"
# Version-1 writers: `metascan sim pairs` stored absolute transmission and said so in this
# provenance attribute; curation and the MOCLIP import stored relative spectra.
_LEGACY_ABSOLUTE_KIND = "zero-order transmission into fused silica, not referenced to bare glass"


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Pairs:
    """N geometry-spectrum pairs; the constructor checks every shape and range."""

    geometry: NDArray[np.bool_]  # (N, S, S) [y, x]
    params: NDArray[np.float64]  # (N, 2) period_um, thickness_um
    spectra: NDArray[np.floating[Any]]  # (N, 2, W)
    wavelength_nm: NDArray[np.float64]  # (W,)
    design_id: NDArray[np.int64]  # (N,)
    split: NDArray[np.uint8]  # (N,) codes into SPLIT_NAMES
    provenance: dict[str, Any] = field(default_factory=dict)
    material: str = field(kw_only=True)  # the film of every pair (layout.material)

    def __post_init__(self) -> None:
        film.check_name(self.material, "pairs material")
        n = self.design_id.shape[0] if self.design_id.ndim == 1 else -1
        if n < 0:
            raise ValueError(f"design_id must be 1-D, got shape {self.design_id.shape}")
        g = self.geometry
        if g.ndim != 3 or g.shape[0] != n or g.shape[1] != g.shape[2]:
            raise ValueError(f"geometry must be (N={n}, S, S), got shape {g.shape}")
        if g.dtype != np.bool_:
            raise ValueError(f"geometry must be boolean, got {g.dtype}")
        if (
            self.params.shape != (n, 2)
            or not np.all(np.isfinite(self.params))
            or np.any(self.params <= 0)
        ):
            raise ValueError(
                f"params must be (N={n}, 2) finite positive period and thickness in um, "
                f"got shape {self.params.shape}"
            )
        w = self.wavelength_nm
        conventions.check_wavelengths(w)
        s = self.spectra
        if s.shape != (n, 2, w.size):
            raise ValueError(f"spectra must be (N={n}, 2, W={w.size}), got shape {s.shape}")
        if s.dtype not in (np.float32, np.float64):
            raise ValueError(f"spectra must be float32 or float64, got {s.dtype}")
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"spectra hold {int(np.count_nonzero(~np.isfinite(s)))} NaN/inf values"
            )
        if s.size and (s.min() < 0 or s.max() > 1):
            raise ValueError(
                f"spectra must be transmission fractions in [0, 1], found {s.min():g}..{s.max():g}"
            )
        if self.split.shape != (n,) or (self.split.size and self.split.max() >= len(SPLIT_NAMES)):
            raise ValueError(
                f"split must be (N={n},) codes 0..{len(SPLIT_NAMES) - 1} ({', '.join(SPLIT_NAMES)})"
            )
        _check_grouped(self.design_id, self.split)

    def __len__(self) -> int:
        return int(self.design_id.shape[0])

    @staticmethod
    def build(
        geometry: ArrayLike,
        params: ArrayLike,
        spectra: ArrayLike,
        wavelength_nm: ArrayLike,
        design_id: ArrayLike,
        split: ArrayLike,
        provenance: dict[str, Any] | None = None,
        *,
        material: str,
    ) -> Pairs:
        """Coerce array-likes to the stored dtypes (geometry 0/1 -> bool) and check them."""
        geom = np.asarray(geometry)
        if geom.dtype != np.bool_:
            if geom.size and not np.all((geom == 0) | (geom == 1)):
                raise ValueError("geometry must be binary (0/1)")
            geom = geom.astype(bool)
        spec = np.asarray(spectra)
        if spec.dtype not in (np.float32, np.float64):
            spec = spec.astype(np.float64)
        return Pairs(
            geom,
            np.asarray(params, dtype=np.float64),
            spec,
            np.asarray(wavelength_nm, dtype=np.float64),
            np.asarray(design_id, dtype=np.int64),
            np.asarray(split, dtype=np.uint8),
            dict(provenance or {}),
            material=material,
        )


def _check_grouped(design_id: NDArray[np.int64], split: NDArray[np.uint8]) -> None:
    if design_id.size == 0:
        return
    order = np.lexsort((split, design_id))
    ids, codes = design_id[order], split[order]
    straddles = (ids[1:] == ids[:-1]) & (codes[1:] != codes[:-1])
    if np.any(straddles):
        i = int(np.flatnonzero(straddles)[0])
        raise ValueError(
            f"design_id {int(ids[i])} is in splits {SPLIT_NAMES[codes[i]]} and "
            f"{SPLIT_NAMES[codes[i + 1]]}; replicas of a design must share one split"
        )


def assign_splits(
    design_id: ArrayLike, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> NDArray[np.uint8]:
    """Split codes (N,), drawn per distinct design so replicas never straddle splits.

    The distinct ids are sorted and shuffled with ``seed``, then cut at the cumulative
    fractions (rounded to whole designs): the same ids and seed always give the same splits,
    whatever order the pairs come in.
    """
    ids = np.asarray(design_id)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"design_id must be a 1-D integer array, got {ids.dtype} shape {ids.shape}"
        )
    frac = np.asarray(fractions, dtype=np.float64)
    if (
        frac.shape != (3,)
        or not np.all(np.isfinite(frac))
        or np.any(frac < 0)
        or abs(frac.sum() - 1) > 1e-9
    ):
        raise ValueError(
            f"fractions={tuple(fractions)} must be three non-negative numbers summing to 1"
        )
    unique, inverse = np.unique(ids, return_inverse=True)
    rank = np.empty(unique.size, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(unique.size)] = np.arange(unique.size)
    cuts = np.rint(np.cumsum(frac)[:2] * unique.size)
    codes = np.searchsorted(cuts, rank, side="right").astype(np.uint8)
    out: NDArray[np.uint8] = codes[inverse.ravel()]
    return out


def write_pairs(path: Path, pairs: Pairs, provenance: dict[str, Any] | None = None) -> None:
    """Write ``pairs`` atomically; ``provenance`` is merged over ``pairs.provenance``."""
    attrs = {**pairs.provenance, **(provenance or {})}
    n, size = len(pairs), pairs.geometry.shape[1]

    def fill(f: h5py.File) -> None:
        fixed = {
            "split_names": list(SPLIT_NAMES),
            conventions.ATTRIBUTE: conventions.RELATIVE,  # the only one contract 5 holds
            film.ATTRIBUTE: pairs.material,
        }
        write_header(f, SCHEMA, SCHEMA_VERSION, fixed, attrs, _RESERVED, "pairs")
        f.create_dataset(
            "geometry",
            data=pairs.geometry.view(np.uint8),
            chunks=(1, size, size) if n else None,
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        f.create_dataset("params", data=pairs.params)
        f.create_dataset("spectra", data=pairs.spectra)
        f.create_dataset("wavelength_nm", data=pairs.wavelength_nm)
        f.create_dataset("design_id", data=pairs.design_id)
        f.create_dataset("split", data=pairs.split)

    write_hdf5(path, fill)


def read_pairs(path: Path) -> Pairs:
    """The pairs in ``path``, checked on the way in; provenance attributes come back decoded."""
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "pairs file") as f:
        provenance = {k: decode_attr(v) for k, v in f.attrs.items() if k not in _RESERVED}
        legacy = (
            conventions.ABSOLUTE
            if provenance.get("spectra_kind") == _LEGACY_ABSOLUTE_KIND
            else conventions.RELATIVE
        )
        found = conventions.stored(f.attrs, f"pairs file {path}", legacy)
        conventions.require(found, conventions.RELATIVE, f"pairs file {path}")
        material = film.stored(f.attrs, f"pairs file {path}", REWRITE)
        return Pairs.build(
            np.asarray(f["geometry"][()], dtype=np.uint8).view(np.bool_),
            f["params"][()],
            f["spectra"][()],
            f["wavelength_nm"][()],
            f["design_id"][()],
            f["split"][()],
            provenance,
            material=material,
        )

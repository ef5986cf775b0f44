"""Chosen designs (contract 9 of DESIGN.md): what inverse design returns for a targets file.

The file *is* a design library (contract 1 at the root: ``layout chip --designs`` reads it as
it reads any library), holding each chosen design once, plus a group ``choices`` with one row
per (target, rank, database size):

* ``target_id`` (M,) UTF-8, ``rank`` (M,) int32 (1 = best), ``similarity`` (M,) float32 (cosine
  of the target's spectrum latent and the design's geometry latent; NaN for designs a forward
  surrogate chose, which have no latent: their predicted weighted MSE is in the provenance,
  ``predicted_weighted_mse``), ``design_row`` (M,) int64
  (row of the root library), ``thickness_nm`` (M,) float64 (a design may be chosen at two
  thicknesses), ``database_size`` (M,) int64 (how many probes the search saw: a study over
  growing databases writes one set of choices per size).

Attributes of ``choices``: ``schema`` = "metascan.chosen_designs", ``schema_version``,
``model_identity``, ``material`` (the film of the model that chose them, :mod:`layout.material`:
the designs are meant to be made of it, so an evaluation in another film's world is refused),
``targets`` (path), ``targets_sha256`` (so an evaluation refuses another targets file) and the
writer's provenance. Version-1 files lack ``material`` and are refused: retrieve again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import (
    check_schema,
    decode_attr,
    open_versioned,
    write_attrs,
    write_version,
)
from layout import material as film
from layout.design import DesignLibrary
from layout.library_file import SCHEMA as LIBRARY_SCHEMA
from layout.library_file import SCHEMA_VERSION as LIBRARY_SCHEMA_VERSION
from layout.library_file import read_library_group, write_library_group

SCHEMA = "metascan.chosen_designs"
SCHEMA_VERSION = 2  # 2: material recorded
_RESERVED = {
    "schema",
    "schema_version",
    "software_version",
    "model_identity",
    "targets_sha256",
    film.ATTRIBUTE,
}


@dataclass(frozen=True, eq=False)
class ChosenDesigns:
    library: DesignLibrary
    target_id: tuple[str, ...]
    rank: NDArray[np.int32]
    similarity: NDArray[np.float32]
    design_row: NDArray[np.int64]
    thickness_nm: NDArray[np.float64]
    database_size: NDArray[np.int64]
    model_identity: str
    targets_sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)
    material: str = field(kw_only=True)  # the film of the model that chose them

    def __post_init__(self) -> None:
        film.check_name(self.material, "chosen designs material")
        m = len(self.target_id)
        for name in ("rank", "similarity", "design_row", "thickness_nm", "database_size"):
            if getattr(self, name).shape != (m,):
                raise ValueError(
                    f"choices {name} has shape {getattr(self, name).shape}, expected ({m},)"
                )
        if m and (self.design_row.min() < 0 or self.design_row.max() >= len(self.library)):
            raise ValueError("choices design_row points outside the library")

    def __len__(self) -> int:
        return len(self.target_id)

    def first_thickness_nm(self) -> NDArray[np.float64]:
        """Per library row, the thickness of its first choice (the library holds each design
        once; one chosen at two thicknesses is predicted at the first)."""
        rows, first = np.unique(self.design_row, return_index=True)
        out = np.full(len(self.library), np.nan)
        out[rows] = self.thickness_nm[first]
        return out

    def chosen(self) -> DesignLibrary:
        """One library row per choice, in choice order."""
        return self.library.take(self.design_row)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def has_choices(path: Path) -> bool:
    """Whether ``path`` is an HDF5 design library that carries inverse-design choices."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return "choices" in f and decode_attr(f["choices"].attrs.get("schema")) == SCHEMA


def write_chosen(path: Path, chosen: ChosenDesigns) -> None:
    def fill(f: h5py.File) -> None:
        write_library_group(f, chosen.library)
        g = f.create_group("choices")
        write_version(g, SCHEMA, SCHEMA_VERSION)
        g.attrs["model_identity"] = chosen.model_identity
        g.attrs["targets_sha256"] = chosen.targets_sha256
        g.attrs[film.ATTRIBUTE] = chosen.material
        write_attrs(g, chosen.provenance)
        g.create_dataset("target_id", data=np.array(chosen.target_id, dtype=h5py.string_dtype()))
        for name in ("rank", "similarity", "design_row", "thickness_nm", "database_size"):
            g.create_dataset(name, data=getattr(chosen, name))

    write_hdf5(path, fill)


def read_chosen(path: Path) -> ChosenDesigns:
    path = Path(path)
    with open_versioned(path, LIBRARY_SCHEMA, LIBRARY_SCHEMA_VERSION, "design library") as f:
        if "choices" not in f:
            raise ValueError(
                f"{path} is a design library without inverse-design choices (no /choices); "
                "give the output of `metascan design retrieve`"
            )
        g = f["choices"]
        check_schema(g, SCHEMA, SCHEMA_VERSION, "chosen-designs group", f"{path}:/choices")
        material = film.stored(g.attrs, f"chosen designs {path}", "metascan design retrieve")
        library = read_library_group(f, str(path))
        return ChosenDesigns(
            library=library,
            target_id=tuple(
                s.decode() if isinstance(s, bytes) else str(s) for s in g["target_id"][()]
            ),
            rank=np.asarray(g["rank"][()], dtype=np.int32),
            similarity=np.asarray(g["similarity"][()], dtype=np.float32),
            design_row=np.asarray(g["design_row"][()], dtype=np.int64),
            thickness_nm=np.asarray(g["thickness_nm"][()], dtype=np.float64),
            database_size=np.asarray(g["database_size"][()], dtype=np.int64),
            model_identity=str(decode_attr(g.attrs["model_identity"])),
            targets_sha256=str(decode_attr(g.attrs["targets_sha256"])),
            provenance={k: decode_attr(v) for k, v in g.attrs.items() if k not in _RESERVED},
            material=material,
        )

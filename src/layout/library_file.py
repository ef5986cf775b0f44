"""The design-library file (contract 1): HDF5 with one dataset per column of ``DesignLibrary``.

Layout of a library group (the root of ``designs.h5``, or ``/designs`` inside a chip manifest):
``design_id`` (N) int64, ``period_nm`` (N), ``kind`` (N, K) int8 (-1 empty, 0 rectangle,
1 ellipse, 2 ring), and (N, K) float64 ``center_x_nm``, ``center_y_nm``, ``width_nm``,
``height_nm``, ``inner_width_nm``, ``inner_height_nm``; attributes ``schema``,
``schema_version``, ``kinds`` (the kind codes) and whatever provenance the writer adds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from common.atomic import write_hdf5
from common.versioned_hdf5 import check_schema, write_attrs, write_version
from layout.design import GEOMETRY_COLUMNS, DesignLibrary, Kind

SCHEMA = "metascan.design_library"
SCHEMA_VERSION = 1
_COLUMNS = ("kind", *GEOMETRY_COLUMNS)


def write_library_header(group: h5py.Group, attrs: dict[str, Any] | None = None) -> None:
    """The attributes that make ``group`` a design library, for writers that fill its columns
    themselves (a probe database streams them block by block)."""
    write_version(group, SCHEMA, SCHEMA_VERSION)
    group.attrs["kinds"] = json.dumps({k.name.lower(): int(k) for k in Kind})
    write_attrs(group, attrs or {})


def write_library_group(
    group: h5py.Group, library: DesignLibrary, attrs: dict[str, Any] | None = None
) -> None:
    write_library_header(group, attrs)
    group.create_dataset("design_id", data=library.design_id)
    group.create_dataset("period_nm", data=library.period_nm)
    for name in _COLUMNS:
        group.create_dataset(
            name, data=getattr(library, name), compression="gzip", compression_opts=1, shuffle=True
        )


def read_library_group(group: h5py.Group, source: str = "") -> DesignLibrary:
    check_schema(group, SCHEMA, SCHEMA_VERSION, "design library", source or str(group.name))
    return DesignLibrary(
        np.asarray(group["design_id"][()], dtype=np.int64),
        np.asarray(group["period_nm"][()], dtype=np.float64),
        np.asarray(group["kind"][()], dtype=np.int8),
        *(np.asarray(group[c][()], dtype=np.float64) for c in _COLUMNS[1:]),
    )


def write_library(path: Path, library: DesignLibrary, attrs: dict[str, Any] | None = None) -> None:
    """Write ``designs.h5`` atomically."""

    def fill(f: h5py.File) -> None:
        write_library_group(f, library, attrs)

    write_hdf5(path, fill)


def read_library(path: Path) -> DesignLibrary:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"design library {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            return read_library_group(f, str(path))
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 design library ({exc})") from None

"""The design-library file (contract 1): HDF5 with one dataset per column of ``DesignLibrary``.

Layout of a library group (the root of ``designs.h5``, or ``/designs`` inside a chip manifest):
``design_id`` (N) int64, ``period_nm`` (N), ``kind`` (N, K) int8 (-1 empty, 0 rectangle,
1 ellipse, 2 ring), and (N, K) float64 ``center_x_nm``, ``center_y_nm``, ``width_nm``,
``height_nm``, ``inner_width_nm``, ``inner_height_nm``; attributes ``schema``,
``schema_version``, ``kinds`` (the kind codes) and whatever provenance the writer adds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from common.atomic import write_hdf5
from layout.design import GEOMETRY_COLUMNS, DesignLibrary, Kind

SCHEMA = "metascan.design_library"
SCHEMA_VERSION = 1
_COLUMNS = ("kind", *GEOMETRY_COLUMNS)


def software_version() -> str:
    return version("metascan")


def write_attrs(group: h5py.Group | h5py.File, attrs: dict[str, Any]) -> None:
    """Scalars as HDF5 attributes, anything else (configs, lists) as JSON text."""
    for key, value in attrs.items():
        group.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)


def write_header(
    f: h5py.File,
    schema: str,
    schema_version: int,
    fixed: dict[str, Any],
    provenance: dict[str, Any],
    reserved: set[str],
    what: str,
) -> None:
    """The attributes every versioned project file starts with: schema, schema version,
    software version, the format's own ``fixed`` attributes, then the caller's provenance,
    which may not shadow any ``reserved`` name (the reader separates provenance by them)."""
    clash = sorted(reserved & provenance.keys())
    if clash:
        raise ValueError(f"provenance keys {clash} are reserved by the {what} format")
    f.attrs["schema"] = schema
    f.attrs["schema_version"] = schema_version
    f.attrs["software_version"] = software_version()
    write_attrs(f, fixed)
    write_attrs(f, provenance)


def decode_attr(value: Any) -> Any:
    """The inverse of :func:`write_attrs`: JSON text back to lists and dicts, numpy scalars to
    Python ones."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def has_schema(path: Path, schema: str) -> bool:
    """Whether ``path`` is an HDF5 file that says it holds ``schema``: for telling file kinds
    apart where a command accepts several (``open_versioned`` then reads it strictly)."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return bool(decode_attr(f.attrs.get("schema", "")) == schema)


@contextlib.contextmanager
def open_versioned(path: Path, schema: str, schema_version: int, what: str) -> Iterator[h5py.File]:
    """Open one of the project's HDF5 files for reading, refusing with one line a missing file,
    a file that is not HDF5, another schema, or a newer schema version than this code knows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 {what} ({exc})") from None
    with f:
        found_schema = f.attrs.get("schema")
        if found_schema != schema:
            raise ValueError(f"{path}: not a {what} (schema={found_schema!r}, expected {schema!r})")
        found = int(f.attrs["schema_version"])
        if found > schema_version:
            raise ValueError(
                f"{path}: {what} schema_version {found} is newer than supported {schema_version}"
            )
        yield f


def write_library_header(group: h5py.Group, attrs: dict[str, Any] | None = None) -> None:
    """The attributes that make ``group`` a design library, for writers that fill its columns
    themselves (a probe database streams them block by block)."""
    group.attrs["schema"] = SCHEMA
    group.attrs["schema_version"] = SCHEMA_VERSION
    group.attrs["kinds"] = json.dumps({k.name.lower(): int(k) for k in Kind})
    group.attrs["software_version"] = software_version()
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
    schema = group.attrs.get("schema")
    if schema != SCHEMA:
        raise ValueError(
            f"{source or group.name}: not a design library (schema={schema!r}, expected {SCHEMA!r})"
        )
    found = int(group.attrs["schema_version"])
    if found > SCHEMA_VERSION:
        raise ValueError(
            f"{source}: design library schema_version {found} is newer than supported {SCHEMA_VERSION}"
        )
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

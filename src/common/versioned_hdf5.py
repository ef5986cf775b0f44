"""The header every versioned project file starts with, and how each is opened for reading.

Every contract's file is HDF5 whose root (or group) attributes say ``schema``, ``schema_version``
and ``software_version``, then the format's own attributes and the writer's provenance. One
writer and one strict opener here keep the refusals the same in every format: a missing file,
a file that is not HDF5, another schema, or a newer version than this code knows, each in one
line. Configs and lists ride as JSON text, so any HDF5 tool shows them.
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
    write_version(f, schema, schema_version)
    write_attrs(f, fixed)
    write_attrs(f, provenance)


def write_version(group: h5py.Group | h5py.File, schema: str, schema_version: int) -> None:
    """The three attributes that make ``group`` a versioned project file (or group)."""
    group.attrs["schema"] = schema
    group.attrs["schema_version"] = schema_version
    group.attrs["software_version"] = software_version()


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


def schema_of(path: Path) -> str | None:
    """The ``schema`` a project HDF5 file says it holds, or None for anything else: for telling
    file kinds apart where a command accepts several (``open_versioned`` then reads strictly)."""
    try:
        if not Path(path).is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            value = decode_attr(f.attrs.get("schema"))
    except OSError:
        return None
    return value if isinstance(value, str) else None


def has_schema(path: Path, schema: str) -> bool:
    """Whether ``path`` is an HDF5 file that says it holds ``schema``."""
    return schema_of(path) == schema


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
        check_schema(f, schema, schema_version, what, str(path))
        yield f


def check_schema(
    group: h5py.Group | h5py.File, schema: str, schema_version: int, what: str, source: str
) -> None:
    """Refuse, in one line naming ``source``, a group of another schema or a newer version."""
    found_schema = decode_attr(group.attrs.get("schema"))
    if found_schema != schema:
        raise ValueError(f"{source}: not a {what} (schema={found_schema!r}, expected {schema!r})")
    found = int(group.attrs["schema_version"])
    if found > schema_version:
        raise ValueError(
            f"{source}: {what} schema_version {found} is newer than supported {schema_version}"
        )

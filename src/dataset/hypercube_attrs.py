"""The root attributes of a hypercube file (contract 3), declared once: every writer and reader
of contract 3 goes through :class:`HypercubeAttrs` (the scan's hypercube store, extraction,
processing, the test fixtures), so an attribute cannot be written one way and read another.
The module docstring of :mod:`dataset.hypercube_file` lists them in their stored order.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.versioned_hdf5 import decode_attr

ROLES = ("tile", "flat")
HEADER_KEYS = ("schema", "schema_version", "software_version")
_RESERVED = set(HEADER_KEYS)


Role = Literal["tile", "flat"]


class HypercubeAttrsError(ValueError):
    """A hypercube's root attributes break the declared schema (:class:`HypercubeAttrs`)."""


# What each declared root attribute must be, in words: every refusal quotes it.
_WHAT: dict[str, str] = {
    "role": f"one of {ROLES}",
    "chip_id": "a non-empty string",
    "manifest_sha256": "a non-empty string (the chip manifest's content hash)",
    "layout_sha256": "a string (the layout's hash; '' where the manifest records none)",
    "x_um": "a finite number in um",
    "y_um": "a finite number in um",
    "pixel_size_um": "positive: a finite number of um per pixel",
    "instruments": "a mapping of device name to identity string (stored as JSON text)",
    "config": "a mapping (stored as JSON text)",
    "centre_chip_um": "[u, v], two finite numbers: the chip um at the image centre",
    "chip_to_stage": "2x3 finite numbers [A | offset]: stage um = A @ chip um + offset",
    "full_scale_dn": "a positive integer (the sample camera's full scale in DN)",
    "array": "a non-empty string (the array's name; '*' for a scan's one flat)",
    "array_id": "a non-negative integer",
    "replica": "an integer (-1 for a companion array)",
    "tile_row": "a non-negative integer",
    "tile_col": "a non-negative integer",
    "pads": "a list of non-negative integers (rows of the manifest's pad table)",
    "flat_file": "a path relative to this file's folder (not empty)",
    "autoexposure": "a list of mappings (the flat's auto-exposure sweep, stored as JSON text)",
    "darks_from": "a path relative to this file's folder (not empty)",
}
_REQUIRED = (
    "role",
    "chip_id",
    "manifest_sha256",
    "x_um",
    "y_um",
    "pixel_size_um",
    "instruments",
    "config",
)
_TILE_REQUIRED = ("array_id", "tile_row", "tile_col")
_TILE_ONLY = ("array_id", "replica", "tile_row", "tile_col", "pads", "flat_file")
_FLAT_ONLY = ("autoexposure",)
_JSON = frozenset(
    {"instruments", "config", "centre_chip_um", "chip_to_stage", "pads", "autoexposure"}
)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(name: str, value: Any) -> HypercubeAttrsError:
    return HypercubeAttrsError(f"attribute {name}={_short(value)} must be {_WHAT[name]}")


def _missing(names: list[str], role: Any) -> HypercubeAttrsError:
    what = "; ".join(f"{k}: {_WHAT[k]}" for k in names)
    return HypercubeAttrsError(
        f"hypercube attributes {names} are required for role {role!r} ({what})"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    )


def _numbers(name: str, value: Any, n: int) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) != n or not all(map(_is_number, value)):
        raise _refuse(name, value)
    return tuple(float(v) for v in value)


def _checked(name: str, v: Any) -> Any:
    """One declared attribute, checked and in its stored form (None: absent)."""
    if v is None:
        return None
    kind = _KINDS[name]
    ok: bool
    if kind == "role":
        ok = v in ROLES
    elif kind in ("text", "text0"):
        ok = isinstance(v, str) and (kind == "text0" or bool(v))
    elif kind == "path":
        ok = isinstance(v, str) and bool(v) and not Path(v).is_absolute()
    elif kind == "number":
        ok = _is_number(v)
        v = float(v) if ok else v
    elif kind == "positive":
        ok = _is_number(v) and float(v) > 0
        v = float(v) if ok else v
    elif kind in ("int", "index", "count"):
        ok = _is_int(v) and (kind == "int" or int(v) >= (0 if kind == "index" else 1))
        v = int(v) if ok else v
    elif kind in ("identities", "mapping"):
        ok = isinstance(v, Mapping) and all(isinstance(k, str) for k in v)
        if ok and kind == "identities":
            ok = all(isinstance(x, str) for x in v.values())
        v = copy.deepcopy(dict(v)) if ok else v
    elif kind == "pair":
        return _numbers(name, v, 2)
    elif kind == "affine":
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise _refuse(name, v)
        return tuple(_numbers(name, row, 3) for row in v)
    elif kind == "indices":
        ok = isinstance(v, list | tuple) and all(_is_int(x) and int(x) >= 0 for x in v)
        v = tuple(int(x) for x in v) if ok else v
    else:  # "records"
        ok = isinstance(v, list | tuple) and all(isinstance(x, Mapping) for x in v)
        v = tuple(copy.deepcopy(dict(x)) for x in v) if ok else v
    if not ok:
        raise _refuse(name, v)
    return v


_KINDS: dict[str, str] = {
    "role": "role",
    "chip_id": "text",
    "manifest_sha256": "text",
    "layout_sha256": "text0",
    "x_um": "number",
    "y_um": "number",
    "pixel_size_um": "positive",
    "instruments": "identities",
    "config": "mapping",
    "centre_chip_um": "pair",
    "chip_to_stage": "affine",
    "full_scale_dn": "count",
    "array": "text",
    "array_id": "index",
    "replica": "int",
    "tile_row": "index",
    "tile_col": "index",
    "pads": "indices",
    "flat_file": "path",
    "autoexposure": "records",
    "darks_from": "path",
}


def _stored(value: Any) -> Any:
    """A field's value as the writer takes it: tuples as lists, mappings as (copied) dicts."""
    if isinstance(value, tuple):
        return [_stored(v) for v in value]
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    return value


def plain_value(value: Any) -> Any:
    """An attribute as h5py gives it, in Python types (JSON text is left to the caller)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@dataclass(frozen=True, kw_only=True)
class HypercubeAttrs:
    """The root attributes of a hypercube file (module docstring), the one declaration every
    writer and reader goes through. Fields are in the order they are stored; ``None`` means
    absent (left out of :meth:`to_attrs`). The constructor checks every field and keeps it in
    its stored form (sequences as tuples); ``extra`` holds the caller's further provenance."""

    role: Role
    chip_id: str
    manifest_sha256: str
    layout_sha256: str | None = None
    x_um: float  # stage position of the image centre
    y_um: float
    pixel_size_um: float
    instruments: Mapping[str, str]  # device -> identity string
    config: Mapping[str, Any]  # the scan's config as used
    centre_chip_um: tuple[float, float] | None = None  # chip µm at the image centre
    chip_to_stage: tuple[tuple[float, ...], ...] | None = None  # 2x3 [A | offset]
    full_scale_dn: int | None = None  # the sample camera's full scale
    array: str | None = None  # the array's name; "*" for a scan's one flat
    # tile only
    array_id: int | None = None
    replica: int | None = None
    tile_row: int | None = None
    tile_col: int | None = None
    pads: tuple[int, ...] | None = None  # pad-table rows the tile was planned for
    flat_file: str | None = None  # the tile's flat file, relative to its folder
    # flat only: the auto-exposure sweep, one {polarization, wavelength_nm, result} per band
    autoexposure: tuple[Mapping[str, Any], ...] | None = None
    # the hypercube this file's darks were copied from (relative to its folder); None: its own
    darks_from: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "extra":
                object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name)))
        if self.role == "tile":
            missing = [k for k in _TILE_REQUIRED if getattr(self, k) is None]
            if missing:
                raise _missing(missing, self.role)
        other = _TILE_ONLY if self.role == "flat" else _FLAT_ONLY
        for name in other:
            if getattr(self, name) is not None:
                only = "tile" if name in _TILE_ONLY else "flat"
                raise HypercubeAttrsError(
                    f"attribute {name} is only for role {only!r}, not for role {self.role!r}"
                )
        bad = [k for k in self.extra if not isinstance(k, str) or k in _KINDS or k in _RESERVED]
        if bad:
            raise HypercubeAttrsError(
                f"extra attributes {bad} must be other names than the declared and reserved ones"
            )
        object.__setattr__(self, "extra", dict(self.extra))

    def to_attrs(self) -> dict[str, Any]:
        """The root attributes as the writer takes them (:meth:`HypercubeWriter.create`):
        declared fields in order, absent ones left out, then ``extra``."""
        out = {
            f.name: _stored(getattr(self, f.name))
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        out.update(copy.deepcopy(dict(self.extra)))
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], path: Path | str) -> HypercubeAttrs:
        """Decode and check root attributes: as stored (``h5py`` attributes, JSON text) or as a
        writer takes them. The file's header (schema, versions) and HDF5-internal names
        (``_...``) are passed over; anything undeclared goes to ``extra``. A missing or bad
        attribute is one line naming ``path``, the key and what it must be."""
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in attrs.items():
            if key in _RESERVED or key.startswith("_"):
                continue
            value = plain_value(raw)
            if key not in _KINDS:
                extra[key] = decode_attr(value)
                continue
            if key in _JSON and isinstance(value, str):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            values[key] = value
        try:
            missing = [k for k in _REQUIRED if k not in values]
            if missing:
                raise _missing(missing, values.get("role"))
            return cls(**values, extra=extra)
        except HypercubeAttrsError as exc:
            raise HypercubeAttrsError(f"{path}: {exc}") from None

"""The chip manifest (contract 2): everything downstream needs to find pads, without the GDS.

``chip.h5`` holds chip attributes, an ``arrays`` table (one row per placed array: dataset
replicas and companions), a ``pads`` table (one row per pad and per fiducial mark) and the chip's
design library under ``/designs``. Coordinates are chip µm: ``x_um, y_um`` of a pad is its centre,
row 0 / column 0 is the pad at the array's lower-left corner (rows grow with y).

Besides ``thickness_nm`` the chip attributes hold ``material``, the film the chip is designed to
be made of (:mod:`layout.material`); the simulated chip computes its spectra in it and every file
downstream records it. Version 1 manifests predate it and are refused with one line saying to
write the chip again (``metascan layout chip``): a guessed film would mislabel every spectrum.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import open_versioned, write_attrs, write_version
from layout import material as film
from layout.design import DesignLibrary
from layout.library_file import read_library_group, write_library_group

SCHEMA = "metascan.chip_manifest"
SCHEMA_VERSION = 2  # 2: the film material recorded


class Role(IntEnum):
    """What a pad-table row is for; stored as int8 with the mapping in the ``roles`` attribute."""

    DATASET = 0
    COMPANION = 1
    FIDUCIAL = 2


@dataclass(frozen=True)
class PadTable:
    """Columns of the pad table; ``design_id`` and ``row``/``col`` are -1 for fiducials, and
    ``replica`` is -1 for companion arrays (they hold designs of every replica's array)."""

    array_id: NDArray[np.int32]
    replica: NDArray[np.int32]
    role: NDArray[np.int8]
    row: NDArray[np.int32]
    col: NDArray[np.int32]
    x_um: NDArray[np.float64]
    y_um: NDArray[np.float64]
    design_id: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.x_um.shape[0])

    def select(self, mask: NDArray[np.bool_]) -> PadTable:
        return PadTable(*(getattr(self, f.name)[mask] for f in fields(self)))

    @staticmethod
    def concatenate(parts: list[PadTable]) -> PadTable:
        return PadTable(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(PadTable))
        )


@dataclass(frozen=True)
class ArrayTable:
    """One row per placed array. ``name`` is ``A{array_id}R{replica}`` or ``A{array_id}C``."""

    name: list[str]
    array_id: NDArray[np.int32]
    replica: NDArray[np.int32]
    role: NDArray[np.int8]
    origin_x_um: NDArray[np.float64]  # lower-left corner of pad (0, 0)
    origin_y_um: NDArray[np.float64]
    rows: NDArray[np.int32]
    cols: NDArray[np.int32]


Corner = Literal["lower_left", "lower_right", "upper_left", "upper_right"]


@dataclass(frozen=True)
class FiducialPoint:
    """A fiducial cross of the manifest: its pad-table row, the array it frames, and where."""

    index: int
    array: str
    corner: Corner
    x_um: float
    y_um: float

    @property
    def label(self) -> str:
        return f"{self.array}:{self.corner}"


FiducialReadings = tuple[NDArray[np.float64], NDArray[np.float64], list[str]]
"""Chip points, stage points and labels of fiducials as read on a bench (for the alignment)."""


@dataclass(frozen=True)
class ChipManifest:
    """The queries (``array_index``, ``pads_of``, ``array_center_um``, ``fiducials``) are the
    one way to find an array's pads: each is a predicate over several columns, and copies of it
    drifted apart before they lived here."""

    chip_id: str
    thickness_nm: float
    pad_size_um: float
    pad_pitch_um: float
    arrays: ArrayTable
    pads: PadTable
    designs: DesignLibrary
    attrs: dict[str, Any]
    material: str = field(kw_only=True)  # the film (layout.material), beside thickness_nm
    # Inverse-designed chips (``metascan design chip``): what each pad was designed for, as a
    # row of ``target_ids`` (-1: a pad or fiducial designed for no target).
    pad_target: NDArray[np.int32] | None = field(default=None, kw_only=True)
    target_ids: tuple[str, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        film.check_name(self.material, "chip material")
        if self.pad_target is None:
            if self.target_ids:
                raise ValueError("target_ids without pad_target: which pad is for which target?")
            return
        if self.pad_target.shape != (len(self.pads),):
            raise ValueError(
                f"pad_target has shape {self.pad_target.shape}; the chip has {len(self.pads)} "
                "pad-table rows"
            )
        bad = (self.pad_target < -1) | (self.pad_target >= len(self.target_ids))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"pad-table row {i} names target {int(self.pad_target[i])}; the chip has "
                f"{len(self.target_ids)} targets (-1: none)"
            )

    def array_index(self, name: str) -> int:
        """Row of the arrays table for ``name``, or one line listing the chip's arrays."""
        try:
            return self.arrays.name.index(name)
        except ValueError:
            raise ValueError(
                f"array {name!r} is not on chip {self.chip_id!r}; arrays are "
                f"{', '.join(self.arrays.name)}"
            ) from None

    def pads_of(self, array: int | str) -> NDArray[np.intp]:
        """Pad-table rows of an array's pads (by arrays-table row or name) in table order, its
        fiducials excluded."""
        index = self.array_index(array) if isinstance(array, str) else array
        a, pads = self.arrays, self.pads
        return np.flatnonzero(
            (pads.array_id == a.array_id[index])
            & (pads.replica == a.replica[index])
            & (pads.role == a.role[index])
        )

    def array_center_um(self, index: int) -> tuple[float, float]:
        """Chip µm of an array's centre: its origin plus half its rows and columns of pitch."""
        a = self.arrays
        return (
            float(a.origin_x_um[index] + a.cols[index] * self.pad_pitch_um / 2),
            float(a.origin_y_um[index] + a.rows[index] * self.pad_pitch_um / 2),
        )

    def fiducials(self) -> list[FiducialPoint]:
        """Every fiducial in pad-table order, named by the array it frames and its corner
        (found by position relative to the array's centre, not by the order of placement)."""
        arrays, pads = self.arrays, self.pads
        by_key = {
            (int(arrays.array_id[k]), int(arrays.replica[k])): k for k in range(len(arrays.name))
        }
        points = []
        for i in np.flatnonzero(pads.role == Role.FIDUCIAL):
            key = (int(pads.array_id[i]), int(pads.replica[i]))
            if key not in by_key:
                raise ValueError(f"fiducial at pad-table row {i} belongs to no array {key}")
            k = by_key[key]
            cx, cy = self.array_center_um(k)
            x, y = float(pads.x_um[i]), float(pads.y_um[i])
            corner: Corner = (
                ("upper_" if y > cy else "lower_") + ("right" if x > cx else "left")  # type: ignore[assignment]
            )
            points.append(FiducialPoint(int(i), arrays.name[k], corner, x, y))
        return points

    def content_sha256(self) -> str:
        """SHA-256 of what the chip is: its attributes, arrays, pads, designs and the layout it
        was written with (``layout_sha256``), not the HDF5 bytes, so a manifest rewritten with
        the same content keeps its identity while another chip of the same ``chip_id`` and
        arrays does not. Scans, hypercubes and spectra record it; downstream refuses another."""
        digest = hashlib.sha256()
        head = {
            "chip_id": self.chip_id,
            "thickness_nm": float(self.thickness_nm),
            "material": self.material,
            "pad_size_um": float(self.pad_size_um),
            "pad_pitch_um": float(self.pad_pitch_um),
            "layout_sha256": str(self.attrs.get("layout_sha256", "")),
            "arrays": list(self.arrays.name),
        }
        digest.update(json.dumps(head, sort_keys=True).encode())
        if self.pad_target is not None:
            digest.update(json.dumps(list(self.target_ids)).encode())
            digest.update(np.ascontiguousarray(self.pad_target, dtype="<i8").tobytes())
        tables: list[Any] = [self.arrays, self.pads, self.designs]
        for table in tables:
            for fld in fields(table):
                value = getattr(table, fld.name)
                if isinstance(value, np.ndarray):  # canonical dtypes: in memory == read back
                    kind = "<i8" if value.dtype.kind in "iub" else "<f8"
                    digest.update(fld.name.encode())
                    digest.update(np.ascontiguousarray(value, dtype=kind).tobytes())
        return digest.hexdigest()


def write_manifest(path: Path, manifest: ChipManifest) -> None:
    def fill(f: h5py.File) -> None:
        write_manifest_file(f, manifest)

    write_hdf5(path, fill)


def write_manifest_file(f: h5py.File, m: ChipManifest) -> None:
    write_version(f, SCHEMA, SCHEMA_VERSION)
    f.attrs["chip_id"] = m.chip_id
    f.attrs["thickness_nm"] = m.thickness_nm
    f.attrs[film.ATTRIBUTE] = m.material
    f.attrs["pad_size_um"] = m.pad_size_um
    f.attrs["pad_pitch_um"] = m.pad_pitch_um
    f.attrs["roles"] = json.dumps({r.name.lower(): int(r) for r in Role})
    write_attrs(f, m.attrs)
    arrays = f.create_group("arrays")
    arrays.create_dataset("name", data=np.array(m.arrays.name, dtype=h5py.string_dtype()))
    for fld in fields(ArrayTable):
        if fld.name != "name":
            arrays.create_dataset(fld.name, data=getattr(m.arrays, fld.name))
    pads = f.create_group("pads")
    for fld in fields(PadTable):
        pads.create_dataset(
            fld.name,
            data=getattr(m.pads, fld.name),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
    if m.pad_target is not None:
        pads.create_dataset(
            "target", data=m.pad_target, compression="gzip", compression_opts=1, shuffle=True
        )
        names = np.array(m.target_ids, dtype=h5py.string_dtype())
        f.create_group("targets").create_dataset("target_id", data=names)
    write_library_group(f.create_group("designs"), m.designs)


def read_manifest(path: Path) -> ChipManifest:
    path = Path(path)
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "chip manifest") as f:
        material = film.stored(f.attrs, f"chip manifest {path}", "metascan layout chip")
        a = f["arrays"]
        arrays = ArrayTable(
            [_text(s) for s in a["name"][()]],
            *(a[fld.name][()] for fld in fields(ArrayTable) if fld.name != "name"),
        )
        pads = PadTable(*(f["pads"][fld.name][()] for fld in fields(PadTable)))
        pad_target = f["pads"]["target"][()] if "target" in f["pads"] else None
        target_ids = (
            tuple(_text(s) for s in f["targets"]["target_id"][()]) if "targets" in f else ()
        )
        fixed = {
            "schema",
            "schema_version",
            "chip_id",
            "thickness_nm",
            film.ATTRIBUTE,
            "pad_size_um",
            "pad_pitch_um",
            "roles",
        }
        attrs = {
            k: (v.decode() if isinstance(v, bytes) else v)
            for k, v in f.attrs.items()
            if k not in fixed
        }
        return ChipManifest(
            chip_id=str(f.attrs["chip_id"]),
            thickness_nm=float(f.attrs["thickness_nm"]),
            pad_size_um=float(f.attrs["pad_size_um"]),
            pad_pitch_um=float(f.attrs["pad_pitch_um"]),
            arrays=arrays,
            pads=pads,
            designs=read_library_group(f["designs"], f"{path}:/designs"),
            attrs=attrs,
            material=material,
            pad_target=pad_target,
            target_ids=target_ids,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""The chip-design record: what an inverse-designed chip was asked to be and what it promised.

``metascan design chip`` writes it beside the layout and manifest (``<chip>_design.h5``); the
comparison after the scan (``metascan design report``) reads it with the measured spectra, so
target, promise and measurement are compared pad by pad without re-running any model.

Datasets (T targets of the map, D designed targets, W bands, R x C map):

* ``target_id`` (T,) UTF-8; ``designed_row`` (T,) int64: the row of the designed table that
  serves the target (identical targets share one; -1 for targets the map does not use).
* ``target_srgb`` (T, 3) uint8 (colour maps) or ``target_spectra``/``target_weight`` (T, 2, W)
  float64 (spectral maps); ``target_lab`` (T, 3) float64 CIELAB (D65) of either.
* ``design_id`` (D,) int64, ``promised_spectra`` (D, 2, W), ``promised_lab`` (D, 3),
  ``promised_error`` (D,) (ΔE2000 or weighted MSE against the target, as the model predicts),
  ``retrieved_error`` (D,) (the best probe's, before any search).
* ``wavelength_nm`` (W,), ``grid`` (R, C) int32 (the map: rows of ``target_id``, -1 empty).

Attributes: ``schema`` = "metascan.chip_design", ``schema_version``, ``software_version``,
``kind`` (colour or spectrum), ``manifest_sha256`` (the chip's content hash: a report refuses
another chip), ``material``, ``thickness_nm``, ``lamp_temperature_k``, ``truncation`` and the
writer's provenance (method, predictor, model identity, map source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from layout import material as film

SCHEMA = "metascan.chip_design"
SCHEMA_VERSION = 1
KINDS = ("colour", "spectrum")
_FIXED = ("kind", "manifest_sha256", "thickness_nm", "lamp_temperature_k", "truncation")


@dataclass(frozen=True, eq=False)
class ChipDesign:
    kind: str
    target_id: tuple[str, ...]
    designed_row: NDArray[np.int64]
    target_lab: NDArray[np.float64]
    design_id: NDArray[np.int64]
    promised_spectra: NDArray[np.float64]
    promised_lab: NDArray[np.float64]
    promised_error: NDArray[np.float64]
    retrieved_error: NDArray[np.float64]
    wavelength_nm: NDArray[np.float64]
    grid: NDArray[np.int32]
    manifest_sha256: str
    material: str
    thickness_nm: float
    lamp_temperature_k: float
    truncation: str
    target_srgb: NDArray[np.uint8] | None = None
    target_spectra: NDArray[np.float64] | None = None
    target_weight: NDArray[np.float64] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} must be one of {', '.join(KINDS)}")
        t, d, w = len(self.target_id), self.design_id.size, self.wavelength_nm.size
        film.check_name(self.material, "chip design material")
        checks = {
            "designed_row": (self.designed_row, (t,)),
            "target_lab": (self.target_lab, (t, 3)),
            "promised_spectra": (self.promised_spectra, (d, 2, w)),
            "promised_lab": (self.promised_lab, (d, 3)),
            "promised_error": (self.promised_error, (d,)),
            "retrieved_error": (self.retrieved_error, (d,)),
        }
        if self.kind == "colour":
            checks["target_srgb"] = (self.target_srgb, (t, 3))  # type: ignore[assignment]
        else:
            checks["target_spectra"] = (self.target_spectra, (t, 2, w))  # type: ignore[assignment]
            checks["target_weight"] = (self.target_weight, (t, 2, w))  # type: ignore[assignment]
        for name, (value, shape) in checks.items():
            if value is None or value.shape != shape:
                got = None if value is None else value.shape
                raise ValueError(f"chip design {name} must have shape {shape}, got {got}")
        if np.any(self.designed_row < -1) or np.any(self.designed_row >= d):
            raise ValueError(f"designed_row must name rows 0..{d - 1} (or -1)")
        if self.grid.ndim != 2 or np.any(self.grid >= t) or np.any(self.grid < -1):
            raise ValueError(f"grid must be 2-D rows of 0..{t - 1} (or -1)")


_ARRAYS = (
    "designed_row",
    "target_lab",
    "design_id",
    "promised_spectra",
    "promised_lab",
    "promised_error",
    "retrieved_error",
    "wavelength_nm",
    "grid",
)
_OPTIONAL = ("target_srgb", "target_spectra", "target_weight")


def write_chip_design(path: Path, design: ChipDesign) -> None:
    def fill(f: h5py.File) -> None:
        fixed = {name: getattr(design, name) for name in _FIXED}
        fixed[film.ATTRIBUTE] = design.material
        write_header(
            f,
            SCHEMA,
            SCHEMA_VERSION,
            fixed,
            design.provenance,
            {*_FIXED, film.ATTRIBUTE},
            "chip design",
        )
        f.create_dataset("target_id", data=np.array(design.target_id, dtype=h5py.string_dtype()))
        for name in (*_ARRAYS, *_OPTIONAL):
            value = getattr(design, name)
            if value is not None:
                f.create_dataset(name, data=value)

    write_hdf5(path, fill)


def read_chip_design(path: Path) -> ChipDesign:
    path = Path(path)
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "chip design") as f:
        material = film.stored(f.attrs, f"chip design {path}", "metascan design chip")
        reserved = {"schema", "schema_version", "software_version", film.ATTRIBUTE, *_FIXED}
        provenance = {k: decode_attr(v) for k, v in f.attrs.items() if k not in reserved}
        names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in f["target_id"][()])
        arrays = {name: f[name][()] for name in (*_ARRAYS, *_OPTIONAL) if name in f}
        return ChipDesign(
            kind=str(decode_attr(f.attrs["kind"])),
            target_id=names,
            manifest_sha256=str(decode_attr(f.attrs["manifest_sha256"])),
            material=material,
            thickness_nm=float(f.attrs["thickness_nm"]),
            lamp_temperature_k=float(f.attrs["lamp_temperature_k"]),
            truncation=str(decode_attr(f.attrs["truncation"])),
            provenance=provenance,
            **arrays,
        )

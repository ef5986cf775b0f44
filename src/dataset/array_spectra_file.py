"""The array-spectra file (contract 4 of DESIGN.md): per-pad spectra of one scanned array, in HDF5.

Extraction writes one per scanned array; curation reads them back and merges arrays
(:meth:`ArraySpectra.concatenate`) to compare replicas. Datasets at the root, P pads,
Q polarizations, W wavelengths:

* ``transmission`` (P, Q, W) float64: mean flat-fielded transmission (a fraction; measured
  values may stray a little outside 0-1 with noise) inside each pad's eroded region.
  NaN is allowed only for pads flagged MISSING, so a NaN can never slip into training unnoticed.
* ``spread`` (P, Q, W) float64: standard deviation of the per-pixel transmission inside the
  same region (same NaN rule; >= 0 elsewhere).
* ``pixel_count`` (P, Q) int32: pixels averaged per pad and polarization.
* ``flags`` (P,) uint16: :class:`dataset.quality.PadFlag` bits (named in the ``pad_flags``
  attribute).
* Identity, copied from the chip manifest's pad table so the file joins on its own:
  ``array_id``, ``replica``, ``row``, ``col`` (P,) int32, ``role`` (P,) int8
  (:class:`layout.manifest.Role`, named in the ``roles`` attribute), ``design_id`` (P,) int64,
  ``x_um``, ``y_um`` (P,) float64 chip coordinates of the pad centre.
* Coordinates ``polarization`` (Q,) strings ("x", "y") and ``wavelength_nm`` (W,) float64,
  strictly increasing, attached as HDF5 dimension scales along with a ``pad`` index, so the
  file also opens with ``xarray.open_dataset(path, engine="h5netcdf")``.

Root attributes: ``schema`` = "metascan.array_spectra", ``schema_version``,
``software_version``, ``roles``, ``pad_flags``, ``spectra_convention`` (``relative_to_substrate``:
flat-fielded on the bare glass, :mod:`dataset.conventions`), ``chip_id``, ``manifest_sha256``
(the chip manifest's content hash), ``array`` (array name, e.g.
``A0R1``; names joined by "," after a merge), ``hypercubes`` (JSON list of source files),
``registration_method``, ``registration_residual_px``, ``erosion_margin_um``,
``flag_thresholds`` (JSON object), ``reference_compensation`` (0/1), then the writer's
provenance (scalars as attributes, anything else as JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from dataset import conventions
from dataset.columns import check_pad_columns
from dataset.quality import PadFlag, describe
from layout.manifest import PadTable, Role

SCHEMA = "metascan.array_spectra"
SCHEMA_VERSION = 1
POLARIZATIONS = ("x", "y")
# Wavelength grids closer than this are the same bands (arange vs linspace rounding); anything
# further apart is a different scan plan and refuses to merge.
WAVELENGTH_TOLERANCE_NM = 1e-6
_PAD_COLUMNS: dict[str, type[np.generic]] = {
    "array_id": np.int32,
    "replica": np.int32,
    "role": np.int8,
    "row": np.int32,
    "col": np.int32,
    "design_id": np.int64,
    "x_um": np.float64,
    "y_um": np.float64,
}
_ATTRIBUTES = {  # dataclass field -> root attribute
    "chip_id": "chip_id",
    "manifest_sha256": "manifest_sha256",
    "array_name": "array",
    "hypercubes": "hypercubes",
    "registration_method": "registration_method",
    "registration_residual_px": "registration_residual_px",
    "erosion_margin_um": "erosion_margin_um",
    "flag_thresholds": "flag_thresholds",
    "reference_compensation": "reference_compensation",
}
# Extraction settings: merged arrays must share them, or their flags would not be comparable.
_SETTINGS = (
    "chip_id",
    "manifest_sha256",
    "erosion_margin_um",
    "flag_thresholds",
    "reference_compensation",
)
_RESERVED = {
    "schema",
    "schema_version",
    "software_version",
    "roles",
    "pad_flags",
    conventions.ATTRIBUTE,
    *_ATTRIBUTES.values(),
}
_KNOWN_FLAGS = int(np.bitwise_or.reduce([int(f) for f in PadFlag]))


@dataclass(frozen=True, eq=False, kw_only=True)  # arrays have no single truth value
class ArraySpectra:
    """Per-pad spectra of one scanned array (or several, merged); the constructor checks every
    shape, dtype and the NaN-means-MISSING rule. Build one from a manifest's pad table with
    :meth:`from_pads`, which also converts dtypes."""

    array_id: NDArray[np.int32]
    replica: NDArray[np.int32]
    role: NDArray[np.int8]
    row: NDArray[np.int32]
    col: NDArray[np.int32]
    design_id: NDArray[np.int64]
    x_um: NDArray[np.float64]
    y_um: NDArray[np.float64]
    transmission: NDArray[np.float64]  # (P, Q, W)
    spread: NDArray[np.float64]  # (P, Q, W)
    pixel_count: NDArray[np.int32]  # (P, Q)
    flags: NDArray[np.uint16]  # (P,) PadFlag bits
    wavelength_nm: NDArray[np.float64]  # (W,)
    polarization: tuple[str, ...] = POLARIZATIONS
    chip_id: str
    manifest_sha256: str  # ChipManifest.content_sha256 of the chip scanned
    array_name: str
    hypercubes: tuple[str, ...]
    registration_method: str
    registration_residual_px: float
    erosion_margin_um: float
    flag_thresholds: dict[str, float]
    reference_compensation: bool
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = check_pad_columns(self, _PAD_COLUMNS)
        if n and not np.all(np.isin(self.role, [r.value for r in Role])):
            raise ValueError(f"role codes must be in {[int(r) for r in Role]}")
        if not (np.all(np.isfinite(self.x_um)) and np.all(np.isfinite(self.y_um))):
            raise ValueError("x_um and y_um must be finite chip coordinates")
        self._check_unique_pads()
        self._check_coordinates()
        self._check_measurements(n)
        self._check_attributes()

    def _check_unique_pads(self) -> None:
        # Pad centres are unique on a chip; a repeat means an array was read or merged twice.
        xy = np.column_stack([self.x_um, self.y_um])
        _, first, counts = np.unique(xy, axis=0, return_index=True, return_counts=True)
        if np.any(counts > 1):
            i = int(first[np.argmax(counts > 1)])
            raise ValueError(
                f"pad at ({self.x_um[i]:g}, {self.y_um[i]:g}) um (array {self.array_id[i]}, "
                f"replica {self.replica[i]}, row {self.row[i]}, col {self.col[i]}) appears "
                f"{int(counts.max())} times; each pad may appear once"
            )

    def _check_coordinates(self) -> None:
        pol = self.polarization
        if (
            not isinstance(pol, tuple)
            or not pol
            or len(set(pol)) != len(pol)
            or not set(pol) <= set(POLARIZATIONS)
        ):
            raise ValueError(
                f"polarization={pol!r} must be a tuple of distinct names from {POLARIZATIONS}"
            )
        w = self.wavelength_nm
        if (
            w.ndim != 1
            or w.size == 0
            or w.dtype != np.float64
            or not np.all(np.isfinite(w))
            or np.any(np.diff(w) <= 0)
            or w[0] <= 0
        ):
            raise ValueError(
                "wavelength_nm must be a non-empty, positive, strictly increasing 1-D float64 array"
            )

    def _check_measurements(self, n: int) -> None:
        shape = (n, len(self.polarization), self.wavelength_nm.size)
        for name in ("transmission", "spread"):
            values = getattr(self, name)
            if values.shape != shape or values.dtype != np.float64:
                raise ValueError(
                    f"{name} must be (P={n}, Q={shape[1]}, W={shape[2]}) float64, "
                    f"got {values.shape} {values.dtype}"
                )
            if np.any(np.isinf(values)):
                raise ValueError(f"{name} holds {int(np.count_nonzero(np.isinf(values)))} inf")
        count = self.pixel_count
        if count.shape != shape[:2] or count.dtype != np.int32 or np.any(count < 0):
            raise ValueError(
                f"pixel_count must be (P={n}, Q={shape[1]}) int32 >= 0, "
                f"got {count.shape} {count.dtype}"
            )
        flags = self.flags
        if flags.shape != (n,) or flags.dtype != np.uint16:
            raise ValueError(f"flags must be ({n},) uint16, got {flags.shape} {flags.dtype}")
        unknown = int(np.bitwise_or.reduce(flags, initial=0)) & ~_KNOWN_FLAGS
        if unknown:
            raise ValueError(
                f"flags hold unknown bits {unknown:#x}; PadFlag defines {_KNOWN_FLAGS:#x}"
            )
        missing = (flags & PadFlag.MISSING) != 0
        for name in ("transmission", "spread"):
            nan_pads = np.isnan(getattr(self, name)).any(axis=(1, 2))
            bad = nan_pads & ~missing
            if np.any(bad):
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{name} of pad {i} (array {self.array_id[i]}, replica {self.replica[i]}, "
                    f"row {self.row[i]}, col {self.col[i]}) is NaN but its flags "
                    f"({describe(int(flags[i]), PadFlag)}) lack MISSING"
                )
        if np.any(self.spread < 0):  # NaN compares False
            raise ValueError(f"spread must be >= 0, found {np.nanmin(self.spread):g}")

    def _check_attributes(self) -> None:
        for name in ("chip_id", "manifest_sha256", "array_name", "registration_method"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}={value!r} must be a non-empty string")
        if not isinstance(self.hypercubes, tuple) or not all(
            isinstance(h, str) for h in self.hypercubes
        ):
            raise ValueError(f"hypercubes={self.hypercubes!r} must be a tuple of file names")
        for name in ("registration_residual_px", "erosion_margin_um"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        thresholds = self.flag_thresholds
        if not isinstance(thresholds, dict) or not all(
            isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            for k, v in thresholds.items()
        ):
            raise ValueError(f"flag_thresholds={thresholds!r} must map names to finite numbers")
        if not isinstance(self.reference_compensation, bool):
            raise ValueError(
                f"reference_compensation={self.reference_compensation!r} must be True or False"
            )

    def __len__(self) -> int:
        return int(self.array_id.shape[0])

    def pad_table(self) -> PadTable:
        """The identity columns as the manifest's pad table type, for joins with the manifest."""
        return PadTable(*(getattr(self, f.name) for f in fields(PadTable)))

    @staticmethod
    def from_pads(
        pads: PadTable,
        *,
        transmission: ArrayLike,
        spread: ArrayLike,
        pixel_count: ArrayLike,
        flags: ArrayLike,
        wavelength_nm: ArrayLike,
        polarization: tuple[str, ...] = POLARIZATIONS,
        hypercubes: tuple[str, ...] | list[str] = (),
        **attributes: Any,
    ) -> ArraySpectra:
        """Identity from ``pads`` (rows in the same order as the measurements), array-likes
        converted to the stored dtypes, then checked; ``attributes`` are the remaining fields
        (``chip_id``, ``array_name``, ``registration_method``, ...)."""
        identity: dict[str, Any] = {
            name: np.asarray(getattr(pads, name), dtype=dtype)
            for name, dtype in _PAD_COLUMNS.items()
        }
        flag_values = np.asarray(flags)
        if flag_values.size and (
            flag_values.min() < 0 or flag_values.max() > np.iinfo(np.uint16).max
        ):
            raise ValueError(
                f"flags must fit uint16, found {flag_values.min()}..{flag_values.max()}"
            )
        return ArraySpectra(
            **identity,
            transmission=np.asarray(transmission, dtype=np.float64),
            spread=np.asarray(spread, dtype=np.float64),
            pixel_count=np.asarray(pixel_count, dtype=np.int32),
            flags=flag_values.astype(np.uint16),
            wavelength_nm=np.asarray(wavelength_nm, dtype=np.float64),
            polarization=tuple(polarization),
            hypercubes=tuple(hypercubes),
            **attributes,
        )

    @staticmethod
    def concatenate(parts: list[ArraySpectra]) -> ArraySpectra:
        """One object holding every part's pads, in order (curation compares replicas across
        arrays). Refused unless all parts share the wavelength grid (within
        :data:`WAVELENGTH_TOLERANCE_NM`), polarizations, chip and extraction settings
        (erosion margin, flag thresholds, reference compensation). Array names and registration
        methods are joined with ","; hypercubes are listed once each; the registration residual
        is the worst part's; provenance keeps the entries every part agrees on."""
        if not parts:
            raise ValueError("concatenate needs at least one ArraySpectra, got none")
        first = parts[0]
        for k, part in enumerate(parts[1:], start=1):
            w0, w = first.wavelength_nm, part.wavelength_nm
            if w.shape != w0.shape or np.max(np.abs(w - w0)) > WAVELENGTH_TOLERANCE_NM:
                raise ValueError(
                    f"part {k} ({part.array_name}) has wavelength_nm {_grid(w)}, part 0 "
                    f"({first.array_name}) has {_grid(w0)}; only identical grids merge"
                )
            if part.polarization != first.polarization:
                raise ValueError(
                    f"part {k} ({part.array_name}) has polarization {part.polarization}, "
                    f"part 0 has {first.polarization}"
                )
            for name in _SETTINGS:
                if getattr(part, name) != getattr(first, name):
                    raise ValueError(
                        f"part {k} ({part.array_name}) has {name}={getattr(part, name)!r}, "
                        f"part 0 ({first.array_name}) has {getattr(first, name)!r}"
                    )
        provenance = {
            key: value
            for key, value in first.provenance.items()
            if all(key in p.provenance and p.provenance[key] == value for p in parts[1:])
        }
        columns: dict[str, Any] = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in (*_PAD_COLUMNS, "transmission", "spread", "pixel_count", "flags")
        }
        return ArraySpectra(
            **columns,
            wavelength_nm=first.wavelength_nm,
            polarization=first.polarization,
            chip_id=first.chip_id,
            manifest_sha256=first.manifest_sha256,
            array_name=",".join(_distinct(p.array_name for p in parts)),
            hypercubes=tuple(_distinct(h for p in parts for h in p.hypercubes)),
            registration_method=",".join(_distinct(p.registration_method for p in parts)),
            registration_residual_px=max(p.registration_residual_px for p in parts),
            erosion_margin_um=first.erosion_margin_um,
            flag_thresholds=dict(first.flag_thresholds),
            reference_compensation=first.reference_compensation,
            provenance=provenance,
        )


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def _grid(w: NDArray[np.float64]) -> str:
    return f"({w.size} bands, {w[0]:g}..{w[-1]:g})"


def write_array_spectra(
    path: Path, spectra: ArraySpectra, provenance: dict[str, Any] | None = None
) -> None:
    """Write ``spectra`` atomically; ``provenance`` is merged over ``spectra.provenance``."""
    attrs = {**spectra.provenance, **(provenance or {})}
    fixed: dict[str, Any] = {
        "roles": {r.name.lower(): int(r) for r in Role},
        "pad_flags": {f.name.lower(): int(f) for f in PadFlag if f.name},
        conventions.ATTRIBUTE: conventions.RELATIVE,  # flat-fielded on the bare glass
        **{key: getattr(spectra, name) for name, key in _ATTRIBUTES.items()},
    }
    fixed["hypercubes"] = list(spectra.hypercubes)
    fixed["reference_compensation"] = int(spectra.reference_compensation)

    def fill(f: h5py.File) -> None:
        write_header(f, SCHEMA, SCHEMA_VERSION, fixed, attrs, _RESERVED, "array spectra")
        pad = f.create_dataset("pad", data=np.arange(len(spectra), dtype=np.int32))
        pol = f.create_dataset(
            "polarization", data=np.array(spectra.polarization, dtype=h5py.string_dtype())
        )
        wl = f.create_dataset("wavelength_nm", data=spectra.wavelength_nm)
        for scale, dim in ((pad, "pad"), (pol, "polarization"), (wl, "wavelength_nm")):
            scale.make_scale(dim)
        for name in _PAD_COLUMNS:
            f.create_dataset(name, data=getattr(spectra, name)).dims[0].attach_scale(pad)
        f.create_dataset("flags", data=spectra.flags).dims[0].attach_scale(pad)
        counts = f.create_dataset("pixel_count", data=spectra.pixel_count)
        for axis, scale in enumerate((pad, pol)):
            counts.dims[axis].attach_scale(scale)
        for name in ("transmission", "spread"):
            data = f.create_dataset(
                name,
                data=getattr(spectra, name),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
            for axis, scale in enumerate((pad, pol, wl)):
                data.dims[axis].attach_scale(scale)

    write_hdf5(path, fill)


def read_array_spectra(path: Path) -> ArraySpectra:
    """The spectra in ``path``, checked on the way in; provenance attributes come back decoded."""
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "per-array spectra file") as f:
        provenance = {k: decode_attr(v) for k, v in f.attrs.items() if k not in _RESERVED}
        source = f"per-array spectra file {path}"
        conventions.require(
            conventions.stored(f.attrs, source, conventions.RELATIVE), conventions.RELATIVE, source
        )
        if "manifest_sha256" not in f.attrs:
            raise ValueError(
                f"{source} does not record which chip manifest it was extracted with "
                "(no manifest_sha256; written by an older version): process its scan again"
            )
        attributes = {name: decode_attr(f.attrs[key]) for name, key in _ATTRIBUTES.items()}
        attributes["hypercubes"] = tuple(attributes["hypercubes"])
        attributes["reference_compensation"] = bool(attributes["reference_compensation"])
        attributes["chip_id"] = str(attributes["chip_id"])
        attributes["array_name"] = str(attributes["array_name"])
        attributes["registration_method"] = str(attributes["registration_method"])
        identity: dict[str, Any] = {
            name: np.asarray(f[name][()], dtype=dt) for name, dt in _PAD_COLUMNS.items()
        }
        return ArraySpectra(
            **identity,
            transmission=np.asarray(f["transmission"][()], dtype=np.float64),
            spread=np.asarray(f["spread"][()], dtype=np.float64),
            pixel_count=np.asarray(f["pixel_count"][()], dtype=np.int32),
            flags=np.asarray(f["flags"][()], dtype=np.uint16),
            wavelength_nm=np.asarray(f["wavelength_nm"][()], dtype=np.float64),
            polarization=tuple(
                s.decode() if isinstance(s, bytes) else str(s) for s in f["polarization"][()]
            ),
            provenance=provenance,
            **attributes,
        )

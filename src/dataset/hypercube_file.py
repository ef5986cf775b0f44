"""The hypercube file (contract 3 of DESIGN.md): one NetCDF4/HDF5 file per scanned tile, written
band by band as it is acquired, read lazily with xarray.

Dimensions: ``polarization`` (P, strings "x"/"y"), ``wavelength`` (B, float64, nm), ``y``, ``x``
(pixel indices, no coordinate), ``dark_exposure_s`` (D) and ``reference_dark_exposure_s`` (R),
the exposures the darks were taken at (s, strictly increasing): dimension coordinates rather
than an auxiliary coordinate on a ``dark_exposure`` dimension, so ``ds.dark.sel(dark_exposure_s=e)``
works on the file as opened.

Sections: every band of a tile is acquired once per *section*. ``signal`` (the camera signal,
mean of N frames, DN) is always there; ``flat`` (the bare-glass image at the same band,
polarization and exposure) when the layout lists it. Each section ``s`` has, per band (P, B):

* ``s`` (P, B, y, x) float32, NaN until written;
* ``s_reference`` float64: reference-camera mean intensity, DN; ``s_reference_exposure_s``,
  ``s_exposure_s`` float64; ``s_timestamp_s`` float64 unix time; all NaN until written;
* ``s_frames`` int32 (frames averaged), ``s_band_flags`` uint8 (:class:`dataset.quality.BandFlag`
  bits), both 0 until written;
* ``s_completed`` uint8: 1 once the band's image and every per-band value are on disk.

Darks: ``dark`` (D, y, x) float32, ``dark_frames``, ``dark_timestamp_s``, ``dark_completed``
per main-camera exposure; ``reference_dark`` (R) float64 (the reference camera's dark mean, DN),
``reference_dark_frames``, ``reference_dark_timestamp_s``, ``reference_dark_completed`` per
reference-camera exposure. The two cameras keep separate exposure lists because the reference
camera's exposure is set for the lamp, not for the sample.

Where the flat lives (one mechanism for readers, :func:`read_flat`): either in the tile file's
``flat`` section, or in a separate *flat file* — a hypercube file with ``role`` = "flat" whose
``signal`` section is the bare-glass image — named by the tile's ``flat_file`` attribute, a path
relative to the tile file's directory, so a scan keeps one flat for all its tiles.

Root attributes: ``schema`` = "metascan.hypercube", ``schema_version``, ``software_version``,
``role`` ("tile" or "flat"), ``chip_id``, ``manifest_sha256`` (the chip manifest's content hash:
which chip, not only its name), ``x_um``/``y_um`` (stage position of the tile centre),
``pixel_size_um``, ``instruments`` and ``config`` (JSON text); a tile also ``array_id``,
``tile_row``, ``tile_col``; then the caller's provenance (scalars as attributes, anything else as
JSON, as in every project file).

Crash safety: the whole file is built at a temporary name with every variable at full size and
its storage allocated and filled (contiguous layout, early allocation), then renamed into place,
so the file either does not exist or is complete in structure. Writing a band then touches only
raw data at fixed offsets — never metadata — flushes (and fsyncs), and only then sets the band's
``completed`` flag and flushes again: a crash loses at most the band in flight, which reads as
not completed. Re-taking a completed band clears its flag first. The writer reopens the file for
each band by default (about 1 ms a band, see benchmarks/bench_hypercube_file.py), so between
bands no handle is open, and opens it without HDF5 file locking, so a reader in another process
peeking at a scan in progress never makes the scan fail (in the writer's own process HDF5 still
refuses to write a file that is open for reading); one writer per file is the caller's promise
(one runner per bench).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5netcdf
import h5py
import numpy as np
import xarray as xr
from h5py import h5d, h5p
from numpy.typing import ArrayLike, NDArray

from common.atomic import atomic_output, require_free_space
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from dataset.quality import BandFlag

log = logging.getLogger(__name__)

SCHEMA = "metascan.hypercube"
SCHEMA_VERSION = 1
POLARIZATIONS = ("x", "y")
SECTIONS = ("signal", "flat")
ROLES = ("tile", "flat")
WAVELENGTH_TOLERANCE_NM = 1e-6
_RESERVED = {"schema", "schema_version", "software_version"}
_REQUIRED = {"chip_id", "manifest_sha256", "x_um", "y_um", "pixel_size_um", "instruments", "config"}
_TILE_REQUIRED = {"array_id", "tile_row", "tile_col"}
_IDENTITY = ("role", "chip_id", "manifest_sha256", "array_id", "tile_row", "tile_col")
_ALL_FLAGS = int(sum(f.value for f in BandFlag))

# Per-band values of a section: suffix -> (dtype, NaN fill (else 0, and no _FillValue), attrs).
_PER_BAND: dict[str, tuple[str, bool, dict[str, str]]] = {
    "reference": ("f8", True, {"units": "DN", "long_name": "reference-camera mean intensity"}),
    "reference_exposure_s": ("f8", True, {"units": "s", "long_name": "reference exposure"}),
    "exposure_s": ("f8", True, {"units": "s", "long_name": "camera exposure"}),
    "frames": ("i4", False, {"long_name": "frames averaged"}),
    "timestamp_s": ("f8", True, {"units": "s", "long_name": "unix time of the band"}),
    "band_flags": ("u1", False, {"long_name": "BandFlag bits"}),
    "completed": ("u1", False, {"long_name": "1 when the band and its values are on disk"}),
}


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class HypercubeLayout:
    """The shape of one hypercube file; the constructor checks every field."""

    polarizations: tuple[str, ...]
    wavelength_nm: NDArray[np.float64]
    height_px: int
    width_px: int
    dark_exposures_s: tuple[float, ...]
    reference_dark_exposures_s: tuple[float, ...]
    sections: tuple[str, ...] = ("signal",)

    def __post_init__(self) -> None:
        p = self.polarizations
        if not p or len(set(p)) != len(p) or not set(p) <= set(POLARIZATIONS):
            raise ValueError(
                f"polarizations={p!r} must be distinct names from {POLARIZATIONS}, at least one"
            )
        w = self.wavelength_nm
        if (
            not isinstance(w, np.ndarray)
            or w.dtype != np.float64
            or w.ndim != 1
            or w.size == 0
            or not np.all(np.isfinite(w))
            or w[0] <= 0
            or np.any(np.diff(w) <= 0)
        ):
            raise ValueError(
                "wavelength_nm must be a non-empty, positive, strictly increasing float64 1-D array"
            )
        for name in ("height_px", "width_px"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        for name in ("dark_exposures_s", "reference_dark_exposures_s"):
            e = getattr(self, name)
            if (
                not e
                or not all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in e)
                or any(b <= a for a, b in itertools.pairwise(e))
            ):
                raise ValueError(
                    f"{name}={e!r} must be one or more positive exposures in s, strictly increasing"
                )
        s = self.sections
        if not s or len(set(s)) != len(s) or not set(s) <= set(SECTIONS) or "signal" not in s:
            raise ValueError(
                f"sections={s!r} must be distinct names from {SECTIONS}, with 'signal'"
            )

    @staticmethod
    def build(
        polarizations: tuple[str, ...] | list[str],
        wavelength_nm: ArrayLike,
        height_px: int,
        width_px: int,
        dark_exposures_s: ArrayLike,
        reference_dark_exposures_s: ArrayLike | None = None,
        sections: tuple[str, ...] | list[str] = ("signal",),
    ) -> HypercubeLayout:
        """Coerce array-likes to the stored types and sort the exposures; the reference camera's
        dark exposures default to the main camera's."""

        def exposures(value: ArrayLike) -> tuple[float, ...]:
            return tuple(sorted(float(x) for x in np.asarray(value, dtype=np.float64).ravel()))

        ref = dark_exposures_s if reference_dark_exposures_s is None else reference_dark_exposures_s
        return HypercubeLayout(
            tuple(polarizations),
            np.asarray(wavelength_nm, dtype=np.float64),
            int(height_px),
            int(width_px),
            exposures(dark_exposures_s),
            exposures(ref),
            tuple(sections),
        )

    @property
    def bands(self) -> tuple[int, int]:
        """(P, B): the shape of every per-band array."""
        return len(self.polarizations), int(self.wavelength_nm.size)

    @property
    def nbytes(self) -> int:
        """Bytes the preallocated file takes: float32 images of every section and dark, plus a
        megabyte for the per-band scalars and metadata (what the free-space check asks for)."""
        p, b = self.bands
        image = 4 * self.height_px * self.width_px
        return image * (len(self.sections) * p * b + len(self.dark_exposures_s)) + (1 << 20)

    def band_index(self, polarization: str, wavelength_nm: float) -> tuple[int, int]:
        """Indices (p, b) of one band; refuses a polarization or wavelength not in the cube."""
        if polarization not in self.polarizations:
            raise ValueError(
                f"polarization={polarization!r} is not in this hypercube {self.polarizations}"
            )
        return self.polarizations.index(polarization), _index_of(
            "wavelength_nm", wavelength_nm, self.wavelength_nm, WAVELENGTH_TOLERANCE_NM, "nm"
        )

    def mismatch(self, other: HypercubeLayout) -> str | None:
        """The first difference from ``other`` in words, or None when they describe one file."""
        if self.polarizations != other.polarizations:
            return f"polarizations {self.polarizations} != {other.polarizations}"
        w, v = self.wavelength_nm, other.wavelength_nm
        if w.shape != v.shape or not np.allclose(w, v, rtol=0, atol=WAVELENGTH_TOLERANCE_NM):
            return (
                f"wavelengths {w.size} bands {w[0]:g}..{w[-1]:g} nm != "
                f"{v.size} bands {v[0]:g}..{v[-1]:g} nm"
            )
        if (self.height_px, self.width_px) != (other.height_px, other.width_px):
            return (
                f"image size {self.height_px}x{self.width_px} != "
                f"{other.height_px}x{other.width_px} px"
            )
        for name in ("dark_exposures_s", "reference_dark_exposures_s"):
            a, b = getattr(self, name), getattr(other, name)
            if len(a) != len(b) or not np.allclose(a, b, rtol=1e-9, atol=0):
                return f"{name} {a} != {b}"
        if self.sections != other.sections:
            return f"sections {self.sections} != {other.sections}"
        return None


def _index_of(
    name: str, value: float, table: NDArray[np.float64] | tuple[float, ...], atol: float, unit: str
) -> int:
    values = np.asarray(table, dtype=np.float64)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a number in {unit}") from None
    hits = np.flatnonzero(np.abs(values - x) <= max(atol, 1e-12 * abs(x)))
    if hits.size != 1:
        listed = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
        raise ValueError(
            f"{name}={value!r} is not one of this hypercube's values ({listed} {unit})"
        )
    return int(hits[0])


def _check_attrs(attrs: Mapping[str, Any], layout: HypercubeLayout) -> dict[str, Any]:
    """The root attributes as they will be stored, after checking the ones the format defines."""
    out: dict[str, Any] = {"role": attrs.get("role", "tile")}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or key.startswith("_"):
            raise ValueError(f"attribute name {key!r} must be a non-empty string not starting '_'")
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = int(value) if isinstance(value, bool) else value  # netCDF has no booleans
    role = out["role"]
    if role not in ROLES:
        raise ValueError(f"role={role!r} must be one of {ROLES}")
    missing = sorted((_REQUIRED | (_TILE_REQUIRED if role == "tile" else set())) - out.keys())
    if missing:
        raise ValueError(f"hypercube attributes {missing} are required for role {role!r}")
    for key in ("chip_id", "manifest_sha256"):
        if not isinstance(out[key], str) or not out[key]:
            raise ValueError(f"{key}={out[key]!r} must be a non-empty string")
    for key in ("x_um", "y_um", "pixel_size_um"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{key}={v!r} must be a finite number in um")
    if out["pixel_size_um"] <= 0:
        raise ValueError(f"pixel_size_um={out['pixel_size_um']!r} must be positive")
    for key in ("array_id", "tile_row", "tile_col"):
        if key in out and (not isinstance(out[key], int) or out[key] < 0):
            raise ValueError(f"{key}={out[key]!r} must be a non-negative integer")
    for key in ("instruments", "config"):
        if not isinstance(out[key], Mapping):
            raise ValueError(f"{key} must be a mapping (stored as JSON), got {type(out[key])}")
    if "flat_file" in out:
        link = out["flat_file"]
        if role != "tile" or "flat" in layout.sections:
            raise ValueError("flat_file links a tile without a flat section to its flat file")
        if not isinstance(link, str) or not link or Path(link).is_absolute():
            raise ValueError(f"flat_file={link!r} must be a path relative to the tile file")
    return out


def _dcpl() -> Any:
    # Early allocation: every byte of every variable exists from creation, so a band write never
    # allocates, and a crash can only leave raw data half-written, never the file's structure.
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    return dcpl


def _create_file(path: Path, layout: HypercubeLayout, attrs: dict[str, Any]) -> None:
    P, B = layout.bands
    H, W = layout.height_px, layout.width_px
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {
            "polarization": P,
            "wavelength": B,
            "y": H,
            "x": W,
            "dark_exposure_s": len(layout.dark_exposures_s),
            "reference_dark_exposure_s": len(layout.reference_dark_exposures_s),
        }
        f.create_variable(
            "polarization",
            ("polarization",),
            dtype=h5py.string_dtype(),
            data=np.array(layout.polarizations, dtype=object),
        )
        coords = {
            "wavelength": (layout.wavelength_nm, "nm", "filter centre wavelength"),
            "dark_exposure_s": (layout.dark_exposures_s, "s", "camera exposure of the dark"),
            "reference_dark_exposure_s": (
                layout.reference_dark_exposures_s,
                "s",
                "reference-camera exposure of the dark",
            ),
        }
        for name, (values, units, long_name) in coords.items():
            v = f.create_variable(name, (name,), data=np.asarray(values, dtype=np.float64))
            v.attrs.update({"units": units, "long_name": long_name})

        def variable(name: str, dims: tuple[str, ...], dtype: str, nan: bool, **meta: Any) -> None:
            v = f.create_variable(
                name,
                dims,
                dtype=dtype,
                fillvalue=np.nan if nan else None,
                dcpl=_dcpl(),
                fill_time="alloc",
                track_times=False,
            )
            v.attrs.update(meta)

        band = ("polarization", "wavelength")
        for section in layout.sections:
            variable(section, (*band, "y", "x"), "f4", True, units="DN")
            for suffix, (dtype, nan, meta) in _PER_BAND.items():
                variable(f"{section}_{suffix}", band, dtype, nan, **meta)
            f[f"{section}_band_flags"].attrs.update(
                {
                    "flag_masks": np.array([m.value for m in BandFlag if m.value], np.uint8),
                    "flag_meanings": " ".join(str(m.name).lower() for m in BandFlag if m.value),
                }
            )
        for name, dim, image in (
            ("dark", "dark_exposure_s", True),
            ("reference_dark", "reference_dark_exposure_s", False),
        ):
            dims = (dim, "y", "x") if image else (dim,)
            variable(name, dims, "f4" if image else "f8", True, units="DN")
            variable(f"{name}_frames", (dim,), "i4", False, **_PER_BAND["frames"][2])
            variable(f"{name}_timestamp_s", (dim,), "f8", True, **_PER_BAND["timestamp_s"][2])
            variable(f"{name}_completed", (dim,), "u1", False, **_PER_BAND["completed"][2])
    # Through h5py, not h5netcdf: h5netcdf stores numbers as 1-element arrays, the project's
    # header readers (open_versioned) expect HDF5 scalars; xarray reads either.
    with h5py.File(path, "r+") as f:
        write_header(f, SCHEMA, SCHEMA_VERSION, {}, attrs, _RESERVED, "hypercube")


def _layout_of(f: h5py.File, path: Path) -> HypercubeLayout:
    try:
        sections = tuple(s for s in SECTIONS if f"{s}_completed" in f)
        polarizations = tuple(
            p.decode() if isinstance(p, bytes) else str(p) for p in f["polarization"][()]
        )
        height, width = (int(n) for n in f["signal"].shape[2:])
        return HypercubeLayout(
            polarizations,
            np.asarray(f["wavelength"][()], dtype=np.float64),
            height,
            width,
            tuple(float(e) for e in f["dark_exposure_s"][()]),
            tuple(float(e) for e in f["reference_dark_exposure_s"][()]),
            sections,
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: malformed hypercube ({exc})") from None


def _finite(name: str, value: Any, *, positive: bool = False, unit: str = "") -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or (positive and x <= 0):
        what = "a finite positive" if positive else "a finite"
        raise ValueError(f"{name}={value!r} must be {what} number{f' in {unit}' if unit else ''}")
    return x


def _image(image: ArrayLike, layout: HypercubeLayout) -> NDArray[np.float32]:
    a = np.asarray(image)
    shape = (layout.height_px, layout.width_px)
    if a.shape != shape:
        raise ValueError(f"image shape {a.shape} must be {shape} (height_px, width_px)")
    if a.dtype.kind not in "uif":
        raise ValueError(f"image dtype {a.dtype} must be integer or floating point")
    out = a.astype(np.float32)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"image holds {bad} NaN/inf values (or values beyond float32)")
    return out


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


class HypercubeWriter:
    """Writes one hypercube file band by band; build it with :meth:`create` or
    :meth:`open_existing` (to resume), close it (or use it as a context manager) when done."""

    def __init__(
        self, path: Path, layout: HypercubeLayout, *, keep_open: bool, durable: bool
    ) -> None:
        self.path = Path(path)
        self.layout = layout
        self._keep_open = keep_open
        self._durable = durable
        self._file: h5py.File | None = None
        self._closed = False
        with self._session() as f:
            self._done = {
                name: np.asarray(f[f"{name}_completed"][()], dtype=bool)
                for name in (*layout.sections, "dark", "reference_dark")
            }

    @classmethod
    def create(
        cls,
        path: Path,
        layout: HypercubeLayout,
        attrs: Mapping[str, Any],
        *,
        overwrite: bool = False,
        keep_open: bool = False,
        durable: bool = True,
    ) -> HypercubeWriter:
        """Build the whole file (all bands NaN, nothing completed) at a temporary name and rename
        it into place. ``attrs`` are the root attributes (see the module docstring); refuses an
        existing ``path`` unless ``overwrite``. ``durable`` fsyncs each band (power-loss safe),
        ``keep_open`` holds the file open between bands instead of reopening it for each."""
        path = Path(path)
        stored = _check_attrs(attrs, layout)
        if path.exists() and not overwrite:
            raise FileExistsError(f"hypercube {path} exists; resume it or pass overwrite")
        # HDF5 crashes the process when a full disk fails its flush (common.atomic.hdf5_image);
        # a preallocated file's size is known, so a full disk is refused before it starts.
        require_free_space({path: layout.nbytes})
        with atomic_output(path) as tmp:
            _create_file(tmp, layout, stored)
            if durable:
                _fsync_path(tmp)
        if durable:
            _fsync_path(path.parent)
        return cls(path, layout, keep_open=keep_open, durable=durable)

    @classmethod
    def open_existing(
        cls,
        path: Path,
        layout: HypercubeLayout,
        attrs: Mapping[str, Any] | None = None,
        *,
        keep_open: bool = False,
        durable: bool = True,
    ) -> HypercubeWriter:
        """Reopen a hypercube to resume a scan: refuses a file whose schema, version or layout
        differs from ``layout``, or whose identity attributes (role, chip_id, manifest_sha256,
        array_id, tile_row, tile_col) differ from those in ``attrs``; :meth:`completed` then says what is
        left to acquire."""
        path = Path(path)
        with open_versioned(path, SCHEMA, SCHEMA_VERSION, "hypercube") as f:
            if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
                raise ValueError(
                    f"{path}: hypercube schema_version {int(f.attrs['schema_version'])} cannot be "
                    f"resumed by this version ({SCHEMA_VERSION})"
                )
            found = _layout_of(f, path)
            stored = {k: decode_attr(v) for k, v in f.attrs.items()}
        diff = found.mismatch(layout)
        if diff is not None:
            raise ValueError(f"{path}: layout differs from the scan's: file has {diff}")
        for key in _IDENTITY:
            if attrs is not None and key in attrs and stored.get(key) != attrs[key]:
                raise ValueError(
                    f"{path}: {key}={stored.get(key)!r} in the file, {attrs[key]!r} expected"
                )
        writer = cls(path, found, keep_open=keep_open, durable=durable)
        log.info("resuming %s: %s", path, writer.progress())
        return writer

    # -- state ------------------------------------------------------------------------------

    def completed(self, section: str = "signal") -> NDArray[np.bool_]:
        """(P, B) True where the section's band is on disk, or for ``dark``/``reference_dark``
        (D,)/(R,) True where that exposure's dark is."""
        if section not in self._done:
            raise ValueError(f"section={section!r} is not one of {tuple(self._done)}")
        return self._done[section].copy()

    def progress(self) -> str:
        """One line: how much of each section and of the darks is on disk."""
        return ", ".join(f"{k} {int(v.sum())}/{v.size}" for k, v in self._done.items())

    # -- writing ----------------------------------------------------------------------------

    def write_band(
        self,
        section: str,
        polarization: str,
        wavelength_nm: float,
        image: ArrayLike,
        *,
        reference: float,
        reference_exposure_s: float,
        exposure_s: float,
        frames: int,
        timestamp_s: float,
        flags: int = BandFlag.NONE,
        retake: bool = False,
    ) -> None:
        """Store one band of ``section`` and then mark it completed. Every argument is checked
        before anything is written; a completed band is re-taken only with ``retake=True``
        (the acquisition re-takes a band after a lamp interruption, never by accident)."""
        if section not in self.layout.sections:
            raise ValueError(f"section={section!r} is not one of {self.layout.sections}")
        p, b = self.layout.band_index(polarization, wavelength_nm)
        data = _image(image, self.layout)
        values: dict[str, Any] = {
            "reference": _finite("reference", reference, unit="DN"),
            "reference_exposure_s": _finite(
                "reference_exposure_s", reference_exposure_s, positive=True, unit="s"
            ),
            "exposure_s": _finite("exposure_s", exposure_s, positive=True, unit="s"),
            "frames": _count("frames", frames),
            "timestamp_s": _finite("timestamp_s", timestamp_s, unit="s"),
        }
        if (
            isinstance(flags, bool)
            or not isinstance(flags, int | np.integer)
            or flags & ~_ALL_FLAGS
            or flags < 0
        ):
            raise ValueError(f"flags={flags!r} must be BandFlag bits (0..{_ALL_FLAGS})")
        values["band_flags"] = int(flags)
        where = f"band ({polarization}, {float(wavelength_nm):g} nm) of {section}"
        self._write(section, (p, b), data, values, retake, where)

    def write_dark(
        self,
        exposure_s: float,
        image: ArrayLike,
        *,
        frames: int,
        timestamp_s: float,
        retake: bool = False,
    ) -> None:
        """Store the camera's dark (mean of ``frames`` frames) at one of the layout's exposures."""
        d = _index_of("exposure_s", exposure_s, self.layout.dark_exposures_s, 1e-12, "s")
        data = _image(image, self.layout)
        values = {
            "frames": _count("frames", frames),
            "timestamp_s": _finite("timestamp_s", timestamp_s, unit="s"),
        }
        self._write("dark", (d,), data, values, retake, f"dark at {float(exposure_s):g} s")

    def write_reference_dark(
        self,
        exposure_s: float,
        mean_dn: float,
        *,
        frames: int,
        timestamp_s: float,
        retake: bool = False,
    ) -> None:
        """Store the reference camera's dark mean at one of its layout exposures."""
        r = _index_of("exposure_s", exposure_s, self.layout.reference_dark_exposures_s, 1e-12, "s")
        data = np.float64(_finite("mean_dn", mean_dn, unit="DN"))
        values = {
            "frames": _count("frames", frames),
            "timestamp_s": _finite("timestamp_s", timestamp_s, unit="s"),
        }
        where = f"reference dark at {float(exposure_s):g} s"
        self._write("reference_dark", (r,), data, values, retake, where)

    def _write(
        self,
        name: str,
        index: tuple[int, ...],
        data: NDArray[Any] | np.float64,
        values: Mapping[str, Any],
        retake: bool,
        where: str,
    ) -> None:
        if self._closed:
            raise ValueError(f"hypercube writer for {self.path} is closed")
        was_done = bool(self._done[name][index])
        if was_done and not retake:
            raise ValueError(f"{where} is already completed; pass retake=True to re-take it")
        with self._session() as f:
            if was_done:  # a crash during the re-take must not leave the old flag on new data
                self._mark(f, name, index, 0)
                self._done[name][index] = False
            f[name][index] = data
            for suffix, value in values.items():
                f[f"{name}_{suffix}"][index] = value
            self._sync(f)
            self._mark(f, name, index, 1)
        self._done[name][index] = True

    def _mark(self, f: h5py.File, name: str, index: tuple[int, ...], value: int) -> None:
        f[f"{name}_completed"][index] = value
        self._sync(f)

    def _sync(self, f: h5py.File) -> None:
        f.flush()
        if self._durable:
            os.fsync(f.id.get_vfd_handle())

    @contextlib.contextmanager
    def _session(self) -> Iterator[h5py.File]:
        # No HDF5 file locking: a reader holding the file open (a notebook looking at the scan)
        # must not make the next band's write fail. Nothing but raw data changes after creation,
        # so such a reader always sees a consistent structure.
        if self._file is not None:
            yield self._file
            return
        try:
            f = h5py.File(self.path, "r+", locking=False)
        except OSError as exc:
            raise ValueError(f"{self.path} is not a writable hypercube ({exc})") from None
        if not self._keep_open:
            with f:
                yield f
            return
        self._file = f
        yield f

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> HypercubeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------


def read_hypercube(path: Path, *, mask_incomplete: bool = True) -> xr.Dataset:
    """The hypercube, opened lazily with xarray (dask, one band per chunk), after checking its
    schema and version. Root attributes come back decoded (JSON text to dicts). With
    ``mask_incomplete`` every band, dark and per-band value whose ``completed`` flag is 0 reads
    NaN, also one a crash left half-written. Close the dataset (or use ``with``) when done."""
    path = Path(path)
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "hypercube"):
        pass
    ds = xr.open_dataset(
        path,
        engine="h5netcdf",
        chunks={"polarization": 1, "wavelength": 1, "dark_exposure_s": 1},
    )
    ds.attrs = {k: decode_attr(v) for k, v in ds.attrs.items()}
    if mask_incomplete:
        for name in (*(s for s in SECTIONS if s in ds), "dark", "reference_dark"):
            done = ds[f"{name}_completed"].astype(bool)
            for var in [name, *(v for v in ds.data_vars if str(v).startswith(f"{name}_"))]:
                da = ds[var]
                if da.dtype.kind == "f":
                    ds[var] = da.where(done).assign_attrs(da.attrs)
                    ds[var].encoding = da.encoding
    return ds


def read_flat(path: Path) -> xr.Dataset:
    """The flat that belongs to the hypercube at ``path``, wherever it lives: the ``flat``
    section of the tile file itself, or the ``signal`` section of the flat file its
    ``flat_file`` attribute names (checked to be a flat of the same bands and image size).
    Variables ``flat``, ``flat_<value>`` per band, and the darks of the file the flat is in;
    attribute ``flat_source`` = that file's path."""
    path = Path(path)
    ds = read_hypercube(path)
    if "flat" in ds:
        keep = [str(v) for v in ds.data_vars if str(v).startswith(("flat", "dark", "reference_"))]
        out = ds[keep]
        out.attrs["flat_source"] = str(path)
        out.set_close(ds.close)
        return out
    link = ds.attrs.get("flat_file")
    ds.close()
    if not isinstance(link, str):
        raise ValueError(f"{path} has no flat section and no flat_file attribute")
    flat_path = path.parent / link
    flat = read_hypercube(flat_path)
    try:
        if flat.attrs.get("role") != "flat":
            raise ValueError(
                f"{flat_path} (flat_file of {path}) has role {flat.attrs.get('role')!r}"
            )
        for dim in ("polarization", "wavelength"):
            a, b = ds[dim].values, flat[dim].values
            if a.shape != b.shape or not np.all(a == b):
                raise ValueError(f"{flat_path} has other {dim} values than {path}")
        if (flat.sizes["y"], flat.sizes["x"]) != (ds.sizes["y"], ds.sizes["x"]):
            raise ValueError(f"{flat_path} images are not the size of {path}'s")
    except ValueError:
        flat.close()
        raise
    renames = {
        str(v): "flat" + str(v)[len("signal") :]
        for v in flat.data_vars
        if str(v).startswith("signal")
    }
    keep = [
        *renames,
        *(str(v) for v in flat.data_vars if str(v).startswith(("dark", "reference_"))),
    ]
    out = flat[keep].rename(renames)
    out.attrs["flat_source"] = str(flat_path)
    out.set_close(flat.close)
    return out

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

Root attributes: the header ``schema`` = "metascan.hypercube", ``schema_version``,
``software_version``, then those :class:`HypercubeAttrs` declares, in its order (the one
declaration every writer and reader goes through): ``role`` ("tile" or "flat"), ``chip_id``,
``manifest_sha256`` (the chip manifest's content hash: which chip, not only its name),
``layout_sha256``, ``x_um``/``y_um`` (stage position of the image centre), ``pixel_size_um``,
``instruments`` and ``config`` (JSON text), ``centre_chip_um``, ``chip_to_stage``,
``full_scale_dn``, ``array``; a tile also ``array_id``, ``replica``, ``tile_row``, ``tile_col``,
``pads``, ``flat_file``; a flat ``autoexposure``; either ``darks_from`` where its darks were
copied from another file; then the caller's provenance (scalars as attributes, anything else as
JSON, as in every project file).

Reading: :func:`read_hypercube` opens a file lazily with xarray; :func:`read_section` (the fast
reader) reads one section and the darks whole with h5py straight into numpy, for processing.

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
from dataset.hypercube_attrs import HEADER_KEYS, HypercubeAttrs, plain_value
from dataset.quality import BandFlag

log = logging.getLogger(__name__)

SCHEMA = "metascan.hypercube"
SCHEMA_VERSION = 1
POLARIZATIONS = ("x", "y")
SECTIONS = ("signal", "flat")
WAVELENGTH_TOLERANCE_NM = 1e-6
_EXPOSURE_RTOL = 1e-6  # exposures this close (relative) are one ladder value written twice
_RESERVED = set(HEADER_KEYS)
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


# -- root attributes -------------------------------------------------------------------------


def _check_attrs(attrs: Mapping[str, Any], layout: HypercubeLayout, path: Path) -> dict[str, Any]:
    """The root attributes as they will be stored (:class:`HypercubeAttrs`, role "tile" when
    not given), after checking them and that a ``flat_file`` links a tile without a flat."""
    for key in attrs:
        if not isinstance(key, str) or not key or key.startswith("_"):
            raise ValueError(f"attribute name {key!r} must be a non-empty string not starting '_'")
    clash = sorted(_RESERVED & attrs.keys())
    if clash:
        raise ValueError(f"{path}: provenance keys {clash} are reserved by the hypercube format")
    values: dict[str, Any] = {"role": "tile"}
    for key, value in attrs.items():
        value = plain_value(value)
        values[key] = int(value) if isinstance(value, bool) else value  # netCDF has no booleans
    stored = HypercubeAttrs.from_attrs(values, path)
    if stored.flat_file is not None and "flat" in layout.sections:
        raise ValueError(f"{path}: flat_file links a tile without a flat section to its flat file")
    return stored.to_attrs()


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
        stored = _check_attrs(attrs, layout, path)
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
            stored = HypercubeAttrs.from_attrs(f.attrs, path)
        diff = found.mismatch(layout)
        if diff is not None:
            raise ValueError(f"{path}: layout differs from the scan's: file has {diff}")
        for key in _IDENTITY:
            if attrs is not None and key in attrs and getattr(stored, key) != attrs[key]:
                raise ValueError(
                    f"{path}: {key}={getattr(stored, key)!r} in the file, {attrs[key]!r} expected"
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

    def copy_darks(self, source: Path) -> int:
        """Copy every dark this file still lacks from the file at ``source`` (laid out at the
        same exposures, its darks complete): data, frame counts and timestamps as stored, so the
        copy is the same bytes. Returns how many were copied (0 when all were here already)."""
        darks = read_darks(source)
        for camera, mine, theirs, done in (
            ("sample", self.layout.dark_exposures_s, darks.dark_exposure_s, darks.dark_completed),
            (
                "reference",
                self.layout.reference_dark_exposures_s,
                darks.reference_dark_exposure_s,
                darks.reference_dark_completed,
            ),
        ):
            if tuple(mine) != tuple(theirs):
                raise ValueError(
                    f"{source} has {camera} darks at {list(theirs)} s, {self.path} needs them at "
                    f"{list(mine)} s: darks are reused only between files of the same exposures"
                )
            if not done.all():
                raise ValueError(f"{source}: its {camera} darks are not complete; nothing to copy")
        copied = 0
        for d, exposure in enumerate(darks.dark_exposure_s):
            if not self._done["dark"][d]:
                self.write_dark(
                    exposure,
                    darks.dark[d],
                    frames=int(darks.dark_frames[d]),
                    timestamp_s=float(darks.dark_timestamp_s[d]),
                )
                copied += 1
        for r, exposure in enumerate(darks.reference_dark_exposure_s):
            if not self._done["reference_dark"][r]:
                self.write_reference_dark(
                    exposure,
                    float(darks.reference_dark[r]),
                    frames=int(darks.reference_dark_frames[r]),
                    timestamp_s=float(darks.reference_dark_timestamp_s[r]),
                )
                copied += 1
        return copied

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
# Two readers share the header check, the layout (:func:`_layout_of`) and the attributes
# (:class:`HypercubeAttrs`): xarray's (lazy, dask, for looking at a cube) and the fast one
# (h5py straight into numpy, for processing: opening a file through xarray costs ~0.3 s, more
# than extracting a whole tile, and processing needs the images whole). Both read a band, dark
# or per-band value whose ``completed`` flag is 0 as NaN (flags as 0).


def _open(path: Path) -> contextlib.AbstractContextManager[h5py.File]:
    return open_versioned(path, SCHEMA, SCHEMA_VERSION, "hypercube")


def read_hypercube_attrs(path: Path) -> HypercubeAttrs:
    """The root attributes of a hypercube, after the schema check (cheap: no data)."""
    path = Path(path)
    with _open(path) as f:
        return HypercubeAttrs.from_attrs(f.attrs, path)


def _flat_link(path: Path, has_flat_section: bool, attrs: HypercubeAttrs) -> tuple[Path, str]:
    if has_flat_section:
        return path, "flat"
    if attrs.flat_file is None:
        raise ValueError(f"{path} has no flat section and no flat_file attribute")
    return path.parent / attrs.flat_file, "signal"


def _check_flat_role(flat_path: Path, attrs: HypercubeAttrs, tile_path: Path) -> None:
    if attrs.role != "flat":
        raise ValueError(f"{flat_path} (flat_file of {tile_path}) has role {attrs.role!r}")


@dataclass(frozen=True, eq=False)
class CubeSection:
    """One section of a hypercube (a tile's ``signal``, or a flat) and the darks of its file,
    in memory (:func:`read_section`); bands and darks not completed read NaN."""

    path: Path
    attrs: HypercubeAttrs
    polarization: tuple[str, ...]
    wavelength_nm: NDArray[np.float64]
    images: NDArray[np.float32]  # (P, B, H, W)
    completed: NDArray[np.bool_]  # (P, B)
    exposure_s: NDArray[np.float64]  # (P, B)
    reference: NDArray[np.float64]
    reference_exposure_s: NDArray[np.float64]
    band_flags: NDArray[np.uint8]
    dark_exposure_s: NDArray[np.float64]  # (D,)
    darks: NDArray[np.float32]  # (D, H, W)
    reference_dark_exposure_s: NDArray[np.float64]  # (R,)
    reference_dark: NDArray[np.float64]  # (R,)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + self.darks.nbytes)

    def dark_index(self, exposure_s: float) -> int:
        """Index of the dark taken at ``exposure_s``; the format promises one per exposure."""
        k = _exposure_index(self.dark_exposure_s, exposure_s)
        if k is None or math.isnan(float(self.darks[k, 0, 0])):
            have = ", ".join(f"{e:g}" for e in self.dark_exposure_s)
            raise ValueError(
                f"{self.path}: no completed dark at exposure {exposure_s:g} s (darks at {have} s)"
            )
        return k

    def reference_dark_at(self, exposure_s: float) -> float:
        k = _exposure_index(self.reference_dark_exposure_s, exposure_s)
        if k is None or not math.isfinite(float(self.reference_dark[k])):
            have = ", ".join(f"{e:g}" for e in self.reference_dark_exposure_s)
            raise ValueError(
                f"{self.path}: no completed reference dark at {exposure_s:g} s (at {have} s)"
            )
        return float(self.reference_dark[k])


def _exposure_index(exposures: NDArray[np.float64], exposure_s: float) -> int | None:
    for k, e in enumerate(exposures.tolist()):
        if abs(e - exposure_s) <= _EXPOSURE_RTOL * max(abs(e), abs(exposure_s)):
            return k
    return None


@dataclass(frozen=True, eq=False)
class FileDarks:
    """Both cameras' darks of one file, with their frame counts, timestamps and completed
    flags as stored (not NaN-masked: they are copied byte for byte by the dark policy)."""

    path: Path
    dark_exposure_s: tuple[float, ...]
    dark: NDArray[np.float32]  # (D, H, W)
    dark_frames: NDArray[np.int32]
    dark_timestamp_s: NDArray[np.float64]
    dark_completed: NDArray[np.bool_]
    reference_dark_exposure_s: tuple[float, ...]
    reference_dark: NDArray[np.float64]  # (R,)
    reference_dark_frames: NDArray[np.int32]
    reference_dark_timestamp_s: NDArray[np.float64]
    reference_dark_completed: NDArray[np.bool_]

    def mean_dn(self, camera: str, exposure_s: float) -> float:
        """The completed dark's mean for the ``sample`` or ``reference`` camera at an exposure."""
        values: NDArray[Any]
        if camera == "sample":
            exposures, values, done = self.dark_exposure_s, self.dark, self.dark_completed
        else:
            exposures = self.reference_dark_exposure_s
            values, done = self.reference_dark, self.reference_dark_completed
        k = _exposure_index(np.asarray(exposures, dtype=np.float64), exposure_s)
        if k is None or not done[k]:
            have = ", ".join(f"{e:g}" for e in exposures)
            raise ValueError(
                f"{self.path}: no completed {camera} dark at {exposure_s:g} s (darks at {have} s)"
            )
        return float(np.mean(values[k], dtype=np.float64))


def _darks_of(f: h5py.File, layout: HypercubeLayout, path: Path) -> FileDarks:
    def column(name: str, dtype: Any) -> Any:
        return np.asarray(f[name][()], dtype=dtype)

    return FileDarks(
        path=path,
        dark_exposure_s=layout.dark_exposures_s,
        dark=column("dark", np.float32),
        dark_frames=column("dark_frames", np.int32),
        dark_timestamp_s=column("dark_timestamp_s", np.float64),
        dark_completed=column("dark_completed", bool),
        reference_dark_exposure_s=layout.reference_dark_exposures_s,
        reference_dark=column("reference_dark", np.float64),
        reference_dark_frames=column("reference_dark_frames", np.int32),
        reference_dark_timestamp_s=column("reference_dark_timestamp_s", np.float64),
        reference_dark_completed=column("reference_dark_completed", bool),
    )


def read_darks(path: Path) -> FileDarks:
    """The darks of a hypercube file only (the fast reader; no band images are read)."""
    path = Path(path)
    with _open(path) as f:
        return _darks_of(f, _layout_of(f, path), path)


def read_section(path: Path, section: str = "signal") -> CubeSection:
    """One section of a hypercube file and its darks, whole, in numpy (the fast reader)."""
    path = Path(path)
    with _open(path) as f:
        layout = _layout_of(f, path)
        if section not in layout.sections:
            raise ValueError(f"{path} has no {section!r} section")
        attrs = HypercubeAttrs.from_attrs(f.attrs, path)
        completed = np.asarray(f[f"{section}_completed"][()], dtype=bool)
        images = np.asarray(f[section][()], dtype=np.float32)
        images[~completed] = np.nan

        def per_band(suffix: str) -> NDArray[np.float64]:
            values = np.asarray(f[f"{section}_{suffix}"][()], dtype=np.float64)
            values[~completed] = np.nan
            return values

        stored = _darks_of(f, layout, path)
        darks = stored.dark
        darks[~stored.dark_completed] = np.nan
        ref_dark = stored.reference_dark
        ref_dark[~stored.reference_dark_completed] = np.nan
        flags = np.asarray(f[f"{section}_band_flags"][()], dtype=np.uint8)
        flags[~completed] = 0
        return CubeSection(
            path=path,
            attrs=attrs,
            polarization=layout.polarizations,
            wavelength_nm=layout.wavelength_nm,
            images=images,
            completed=completed,
            exposure_s=per_band("exposure_s"),
            reference=per_band("reference"),
            reference_exposure_s=per_band("reference_exposure_s"),
            band_flags=flags,
            dark_exposure_s=np.asarray(layout.dark_exposures_s, dtype=np.float64),
            darks=darks,
            reference_dark_exposure_s=np.asarray(
                layout.reference_dark_exposures_s, dtype=np.float64
            ),
            reference_dark=ref_dark,
        )


def flat_location(tile_path: Path, attrs: HypercubeAttrs) -> tuple[Path, str]:
    """(file, section) holding the flat of the tile at ``tile_path`` (the rule of
    :func:`read_flat`): its own ``flat`` section, else the ``signal`` section of the file its
    ``flat_file`` attribute names, relative to the tile's folder."""
    tile_path = Path(tile_path)
    with h5py.File(tile_path, "r") as f:
        own = "flat" in f and "flat_completed" in f
    return _flat_link(tile_path, own, attrs)


def read_flat_section(tile_path: Path, attrs: HypercubeAttrs) -> CubeSection:
    """The flat of a tile with the fast reader, checked to be a flat when it lives in a flat
    file."""
    path, section = flat_location(tile_path, attrs)
    flat = read_section(path, section)
    if section == "signal":
        _check_flat_role(path, flat.attrs, Path(tile_path))
    return flat


def _open_dataset(path: Path, mask_incomplete: bool) -> tuple[xr.Dataset, HypercubeAttrs]:
    with _open(path) as f:
        attrs = HypercubeAttrs.from_attrs(f.attrs, path)
        header = {k: decode_attr(f.attrs[k]) for k in HEADER_KEYS if k in f.attrs}
    ds = xr.open_dataset(
        path,
        engine="h5netcdf",
        chunks={"polarization": 1, "wavelength": 1, "dark_exposure_s": 1},
    )
    ds.attrs = {**header, **attrs.to_attrs()}
    if mask_incomplete:
        for name in (*(s for s in SECTIONS if s in ds), "dark", "reference_dark"):
            done = ds[f"{name}_completed"].astype(bool)
            for var in [name, *(v for v in ds.data_vars if str(v).startswith(f"{name}_"))]:
                da = ds[var]
                if da.dtype.kind == "f":
                    ds[var] = da.where(done).assign_attrs(da.attrs)
                    ds[var].encoding = da.encoding
    return ds, attrs


def read_hypercube(path: Path, *, mask_incomplete: bool = True) -> xr.Dataset:
    """The hypercube, opened lazily with xarray (dask, one band per chunk), after checking its
    schema and version. Root attributes come back checked and decoded (JSON text to dicts and
    lists, :meth:`HypercubeAttrs.to_attrs` after the header). With ``mask_incomplete`` every
    band, dark and per-band value whose ``completed`` flag is 0 reads NaN, also one a crash
    left half-written. Close the dataset (or use ``with``) when done."""
    return _open_dataset(Path(path), mask_incomplete)[0]


def read_flat(path: Path) -> xr.Dataset:
    """The flat that belongs to the hypercube at ``path``, wherever it lives: the ``flat``
    section of the tile file itself, or the ``signal`` section of the flat file its
    ``flat_file`` attribute names (checked to be a flat of the same bands and image size).
    Variables ``flat``, ``flat_<value>`` per band, and the darks of the file the flat is in;
    attribute ``flat_source`` = that file's path."""
    path = Path(path)
    ds, attrs = _open_dataset(path, True)
    try:
        flat_path, section = _flat_link(path, "flat" in ds, attrs)
    except ValueError:
        ds.close()
        raise
    if section == "flat":
        keep = [str(v) for v in ds.data_vars if str(v).startswith(("flat", "dark", "reference_"))]
        out = ds[keep]
        out.attrs["flat_source"] = str(path)
        out.set_close(ds.close)
        return out
    ds.close()
    flat, flat_attrs = _open_dataset(flat_path, True)
    try:
        _check_flat_role(flat_path, flat_attrs, path)
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

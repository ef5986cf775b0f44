"""Per-pad spectra from hypercubes: one tile's image to per-pad statistics, tiles to an array.

Physics per pixel (the virtual microscope's, and any linear camera's): a band's signal is
``DN = dark(t) + K * lamp * illumination * T * t`` and the reference camera's reading of the
same lamp is ``R = ref_dark(t_R) + K_R * lamp * c * t_R``. Dividing the dark-subtracted signal
by the bare-glass flat's (same band, polarization; its own darks) cancels the illumination, the
pixel's response and the glass, leaving the lamp's change between the two acquisitions, which
the reference camera measured::

    T = (S - D(t)) / (F - D_F(t_F)) * (t_F / t) * [(R_F - RD_F(t_RF)) / t_RF] / [(R - RD(t_R)) / t_R]

``--no-reference`` drops the bracketed factor. ``T`` is relative to the bare substrate (the
flat), which is what a flat-fielded measurement can know; a truth file's
``relative_transmission`` is the same quantity.

Per pad: the pixels whose centres fall inside the pad square eroded by ``margin_um`` from every
edge (in the registered frame, :mod:`dataset.registration`); mean, standard deviation and count
per polarization and band. A pad wholly inside two tiles is taken from the tile where it lies
furthest from the field edge (least vignetting, least registration lever arm).

Reading: :func:`dataset.hypercube_file.read_section`, the hypercube module's fast reader.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from dataset.array_spectra_file import ArraySpectra
from dataset.hypercube_attrs import HypercubeAttrs
from dataset.hypercube_file import (
    CubeSection,
    flat_location,
    read_flat_section,
    read_section,
)
from dataset.quality import BandFlag, PadFlag
from dataset.registration import Model, Registration, edge_energy, nominal_transform, register_grid
from layout.affine import Affine2D
from layout.manifest import ChipManifest, PadTable

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
# A flat pixel with less signal than this above its dark is dead: clamp instead of dividing by ~0.
_MIN_FLAT_DN = 1.0


@dataclass(frozen=True)
class ExtractionSettings:
    """What extraction does beyond the physics: erosion, reference, registration, flag limits."""

    margin_um: float = 1.5  # eroded from each pad edge: PSF (~0.7 µm FWHM) + registration error
    reference: bool = True  # divide by the reference camera's lamp reading
    registration_model: Model = "similarity"
    registration_bands: int = 8  # bands (over both polarizations) that make the contrast image
    max_registration_residual_px: float = 0.5  # tile rms above this: REGISTRATION_DOUBTFUL
    max_spread: float = 0.05  # per-pixel std of T in any band above this: NON_UNIFORM
    glass_tolerance: float = 0.01  # |T - 1| below this in every band: looks like glass, MISSING
    low_signal_fraction: float = 0.05  # flat signal below this of full scale: LOW_SIGNAL
    saturation_fraction: float = 0.98  # pixel mean at or above this of full scale: SATURATED

    def __post_init__(self) -> None:
        checks: dict[str, tuple[float, float, float]] = {
            "margin_um": (self.margin_um, 0.0, 1000.0),
            "max_registration_residual_px": (self.max_registration_residual_px, 0.0, 1000.0),
            "max_spread": (self.max_spread, 0.0, 10.0),
            "glass_tolerance": (self.glass_tolerance, 0.0, 1.0),
            "low_signal_fraction": (self.low_signal_fraction, 0.0, 1.0),
            "saturation_fraction": (self.saturation_fraction, 0.0, 1.0),
        }
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name}={value!r} must be a number in [{low:g}, {high:g}]")
        if self.registration_model not in ("similarity", "affine"):
            raise ValueError(
                f"registration_model={self.registration_model!r} must be 'similarity' or 'affine'"
            )
        if not 1 <= self.registration_bands <= 10_000:
            raise ValueError(f"registration_bands={self.registration_bands!r} must be >= 1")

    def thresholds(self) -> dict[str, float]:
        """The flag limits, as the array-spectra file records them."""
        return {
            "max_registration_residual_px": self.max_registration_residual_px,
            "max_spread": self.max_spread,
            "glass_tolerance": self.glass_tolerance,
            "low_signal_fraction": self.low_signal_fraction,
            "saturation_fraction": self.saturation_fraction,
        }


# -- reading ---------------------------------------------------------------------------------


class FlatCache:
    """Flats by file, read once and shared by every tile (and thread) that links to them. The
    ``capacity`` most recently used stay in memory (a scan with one flat per array would
    otherwise keep every array's flat)."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._flats: OrderedDict[tuple[Path, str], CubeSection] = OrderedDict()
        self._locks: dict[tuple[Path, str], threading.Lock] = {}

    def get(self, tile_path: Path, attrs: HypercubeAttrs) -> CubeSection:
        path, section = flat_location(tile_path, attrs)
        key = (path.resolve(), section)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one reader per flat; other flats load in parallel
            with self._lock:
                flat = self._flats.get(key)
                if flat is not None:
                    self._flats.move_to_end(key)
                    return flat
            flat = read_flat_section(tile_path, attrs)
            with self._lock:
                self._flats[key] = flat
                while len(self._flats) > self.capacity:
                    self._flats.popitem(last=False)
        return flat


# -- one tile ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TileSpectra:
    """Per-pad statistics of the pads measurable in one tile (rows of the manifest's pad
    table), with the tile's registration."""

    source: str
    pad_rows: NDArray[np.int64]  # (n,)
    transmission: FloatArray  # (n, P, B)
    spread: FloatArray  # (n, P, B)
    pixel_count: NDArray[np.int32]  # (n, P)
    flags: NDArray[np.uint16]  # (n,)
    edge_distance_px: FloatArray  # (n,) pad square to the nearest field edge
    registration: Registration
    polarization: tuple[str, ...]
    wavelength_nm: FloatArray
    nbytes: int  # hypercube image bytes this tile read (its own file)


def _full_scale(attrs: HypercubeAttrs) -> float | None:
    """The sample camera's full scale in DN, if the scan recorded it: the ``full_scale_dn``
    attribute, or the camera's ``bit_depth`` in the recorded config's ``camera`` table."""
    if attrs.full_scale_dn is not None:
        return float(attrs.full_scale_dn)
    camera = attrs.config.get("camera")
    depth = camera.get("bit_depth") if isinstance(camera, dict) else None
    if isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= 32:
        return float((1 << depth) - 1)
    return None


def _tile_centre(attrs: HypercubeAttrs, path: Path) -> tuple[float, float]:
    if attrs.centre_chip_um is None:
        raise ValueError(
            f"{path}: attribute centre_chip_um=None must be [u, v], the chip µm of the image centre"
        )
    return attrs.centre_chip_um


def _registration_bands(done: NDArray[np.bool_], count: int) -> list[tuple[int, int]]:
    """Up to ``count`` completed (p, b) spread evenly over polarizations and wavelengths."""
    usable = np.argwhere(done)
    if usable.shape[0] == 0:
        return []
    pick = np.unique(np.linspace(0, usable.shape[0] - 1, min(count, usable.shape[0])).round())
    return [(int(usable[i, 0]), int(usable[i, 1])) for i in pick.astype(int)]


@dataclass(frozen=True, eq=False)
class _Regions:
    """Pixels of each measured pad's eroded region: flat pixel indices in ascending order (a
    gather then walks memory forwards), the measured pad each belongs to, and the pad-by-pixel
    indicator matrix that turns per-pixel values into per-pad sums in one sparse product."""

    pads: NDArray[np.int64]  # indices into the centres passed, pads measured
    pixels: NDArray[np.int64]  # (m,) ascending flat pixel indices
    label: NDArray[np.int64]  # (m,) position in ``pads`` of each pixel's pad
    counts: NDArray[np.int64]  # (n,)
    edge_distance_px: FloatArray
    indicator: sparse.csr_matrix = field(repr=False)  # (n, m), ones

    def sums(self, values: NDArray[np.floating[Any]]) -> FloatArray:
        """(K, m) per-pixel values -> (n, K) per-pad sums, in float64."""
        out: FloatArray = np.asarray(self.indicator @ values.T)
        return out


def pad_regions(
    transform: Affine2D,
    centres_um: FloatArray,
    pad_size_um: float,
    margin_um: float,
    shape: tuple[int, int],
) -> _Regions:
    """The eroded square of every pad whose eroded square lies wholly in the image."""
    h, w = shape
    half = 0.5 * pad_size_um - margin_um
    if half <= 0:
        raise ValueError(
            f"margin_um={margin_um:g} leaves nothing of a {pad_size_um:g} µm pad; "
            f"use < {0.5 * pad_size_um:g}"
        )
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    n = centres_um.shape[0]

    def corner_pixels(size: float) -> FloatArray:
        pts = centres_um[:, None, :] + corners[None] * size
        out: FloatArray = transform.apply(pts.reshape(-1, 2)).reshape(n, 4, 2)
        return out

    eroded = corner_pixels(half)
    inside = (
        (eroded[..., 0].min(axis=1) >= -0.5)
        & (eroded[..., 0].max(axis=1) <= w - 0.5)
        & (eroded[..., 1].min(axis=1) >= -0.5)
        & (eroded[..., 1].max(axis=1) <= h - 0.5)
    )
    full = corner_pixels(0.5 * pad_size_um)
    edge = np.minimum.reduce(
        [
            full[..., 0].min(axis=1) + 0.5,
            w - 0.5 - full[..., 0].max(axis=1),
            full[..., 1].min(axis=1) + 0.5,
            h - 0.5 - full[..., 1].max(axis=1),
        ]
    )
    pads = np.flatnonzero(inside).astype(np.int64)
    inverse = transform.inverse()
    # Half-extent in pixels of a rotated square of half-side ``half`` µm, plus rounding.
    reach = math.ceil(half * float(np.abs(transform.matrix).sum(axis=1).max())) + 1
    grid = np.arange(-reach, reach + 1)
    dc, dr = np.meshgrid(grid, grid)
    centre_px = np.rint(transform.apply(centres_um[pads])).astype(np.int64)
    cols = centre_px[:, 0, None] + dc.ravel()[None, :]
    rows = centre_px[:, 1, None] + dr.ravel()[None, :]
    chip = inverse.apply(np.column_stack([cols.ravel(), rows.ravel()]).astype(np.float64))
    rel = chip.reshape(pads.size, -1, 2) - centres_um[pads][:, None, :]
    take = (np.abs(rel[..., 0]) <= half) & (np.abs(rel[..., 1]) <= half)
    take &= (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    counts = take.sum(axis=1).astype(np.int64)
    keep = counts > 0
    pads, counts, take, cols, rows = pads[keep], counts[keep], take[keep], cols[keep], rows[keep]
    pixels = (rows * w + cols)[take]
    label = np.repeat(np.arange(pads.size), counts)
    order = np.argsort(pixels, kind="stable")
    pixels, label = pixels[order].astype(np.int64), label[order].astype(np.int64)
    indicator = sparse.csr_matrix(
        (np.ones(pixels.size), (label, np.arange(pixels.size))), shape=(pads.size, pixels.size)
    )
    return _Regions(pads, pixels, label, counts, edge[pads], indicator)


def _band_factors(
    tile: CubeSection, flat: CubeSection, reference: bool
) -> tuple[FloatArray, NDArray[np.int64], NDArray[np.int64]]:
    """Per band: the scalar factor (exposure ratio and lamp correction), and the dark index of
    the tile and of the flat at the band's exposures (-1 where the band is incomplete)."""
    p, b = tile.completed.shape
    gain = np.full((p, b), np.nan)
    tile_dark = np.full((p, b), -1, dtype=np.int64)
    flat_dark = np.full((p, b), -1, dtype=np.int64)
    for i in range(p):
        for j in range(b):
            if not (tile.completed[i, j] and flat.completed[i, j]):
                continue
            t, tf = float(tile.exposure_s[i, j]), float(flat.exposure_s[i, j])
            try:
                tile_dark[i, j] = tile.dark_index(t)
                flat_dark[i, j] = flat.dark_index(tf)
            except ValueError as exc:  # a scan stopped before its darks: resume it to use the band
                log.warning(
                    "%s; band (%s, %g nm) left out",
                    exc,
                    tile.polarization[i],
                    tile.wavelength_nm[j],
                )
                tile_dark[i, j] = flat_dark[i, j] = -1
                continue
            factor = tf / t
            if reference:
                tr, trf = (
                    float(tile.reference_exposure_s[i, j]),
                    float(flat.reference_exposure_s[i, j]),
                )
                lamp = (float(tile.reference[i, j]) - tile.reference_dark_at(tr)) / tr
                lamp_flat = (float(flat.reference[i, j]) - flat.reference_dark_at(trf)) / trf
                if not (lamp > 0 and lamp_flat > 0):
                    log.warning(
                        "%s: reference reading at band (%s, %g nm) is not above its dark; "
                        "band left out",
                        tile.path.name,
                        tile.polarization[i],
                        tile.wavelength_nm[j],
                    )
                    tile_dark[i, j] = flat_dark[i, j] = -1
                    continue
                factor *= lamp_flat / lamp
            gain[i, j] = factor
    return gain, tile_dark, flat_dark


def transmission_images(tile_path: Path, *, reference: bool = True) -> CubeSection:
    """Every band of a tile hypercube as per-pixel transmission relative to its flat (the module
    docstring's formula): the same arithmetic as the pad statistics, image by image, for
    quick-looks and checks. Returned as the tile's section with ``images`` replaced (float32,
    NaN where a band, its dark or its flat is incomplete)."""
    tile = read_section(tile_path)
    flat = read_flat_section(tile_path, tile.attrs)
    _check_same_bands(tile, flat)
    gain, tile_dark, flat_dark = _band_factors(tile, flat, reference)
    out = np.full(tile.images.shape, np.nan, dtype=np.float32)
    p, b = gain.shape
    for i in range(p):
        for j in range(b):
            if tile_dark[i, j] < 0:
                continue
            signal = tile.images[i, j] - tile.darks[tile_dark[i, j]]
            glass = flat.images[i, j] - flat.darks[flat_dark[i, j]]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[i, j] = signal / glass * np.float32(gain[i, j])
    return replace(tile, images=out)


def _check_same_bands(tile: CubeSection, flat: CubeSection) -> None:
    if tile.polarization != flat.polarization:
        raise ValueError(
            f"{flat.path} has polarizations {flat.polarization}, {tile.path} {tile.polarization}"
        )
    a, b = tile.wavelength_nm, flat.wavelength_nm
    if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
        raise ValueError(f"{flat.path} has other wavelengths than {tile.path}")
    if tile.shape != flat.shape:
        raise ValueError(
            f"{flat.path} images are {flat.shape[0]}x{flat.shape[1]} px, "
            f"{tile.path}'s {tile.shape[0]}x{tile.shape[1]}"
        )


def extract_tile(
    path: Path,
    manifest: ChipManifest,
    array_name: str,
    settings: ExtractionSettings,
    flats: FlatCache | None = None,
) -> TileSpectra:
    """Register one tile's image to the manifest and measure every pad of ``array_name`` whose
    eroded region it holds (module docstring)."""
    path = Path(path)
    tile = read_section(path, "signal")
    attrs = tile.attrs
    if attrs.role != "tile":
        raise ValueError(f"{path} has role {attrs.role!r}; extraction reads tiles")
    flat = (flats or FlatCache()).get(path, attrs)
    _check_same_bands(tile, flat)
    h, w = tile.shape
    rows = manifest.pads_of(array_name)
    centres = np.column_stack([manifest.pads.x_um[rows], manifest.pads.y_um[rows]])
    nominal = nominal_transform(_tile_centre(attrs, path), attrs.pixel_size_um, h, w)
    gain, tile_dark, flat_dark = _band_factors(tile, flat, settings.reference)
    usable = tile_dark >= 0
    registration = _register(
        tile, flat, usable, tile_dark, flat_dark, centres, manifest, nominal, settings
    )
    regions = pad_regions(
        registration.transform, centres, manifest.pad_size_um, settings.margin_um, (h, w)
    )
    full_scale = _full_scale(attrs)
    saturation_dn = None if full_scale is None else settings.saturation_fraction * full_scale
    stats = _pad_statistics(tile, flat, regions, gain, tile_dark, flat_dark, saturation_dn)
    flags = _flags(tile, flat, regions, registration, stats, settings)
    n_pol = len(tile.polarization)
    counts = np.repeat(regions.counts[:, None], n_pol, axis=1).astype(np.int32)
    return TileSpectra(
        source=path.name,
        pad_rows=rows[regions.pads],
        transmission=stats.mean,
        spread=stats.spread,
        pixel_count=counts,
        flags=flags,
        edge_distance_px=regions.edge_distance_px,
        registration=registration,
        polarization=tile.polarization,
        wavelength_nm=tile.wavelength_nm,
        nbytes=tile.nbytes,
    )


def _register(
    tile: CubeSection,
    flat: CubeSection,
    usable: NDArray[np.bool_],
    tile_dark: NDArray[np.int64],
    flat_dark: NDArray[np.int64],
    centres: FloatArray,
    manifest: ChipManifest,
    nominal: Affine2D,
    settings: ExtractionSettings,
) -> Registration:
    """Registration on the flat-fielded transmission of a few bands, cropped to the array."""
    h, w = tile.shape
    bands = _registration_bands(usable, settings.registration_bands)
    if not bands:
        raise ValueError(f"{tile.path}: no band is complete in both the tile and its flat")
    # Crop to where the array's pads can be: their squares, widened by the search (under half a
    # pitch) and the edge profiles' reach.
    reach = 0.5 * manifest.pad_size_um + manifest.pad_pitch_um
    lo = nominal.apply(centres.min(axis=0) - reach)
    hi = nominal.apply(centres.max(axis=0) + reach)
    c0 = max(0, math.floor(min(lo[0], hi[0])))
    c1 = min(w, math.ceil(max(lo[0], hi[0])) + 1)
    r0 = max(0, math.floor(min(lo[1], hi[1])))
    r1 = min(h, math.ceil(max(lo[1], hi[1])) + 1)
    if c0 >= c1 or r0 >= r1:
        raise ValueError(f"{tile.path}: the array's pads are not in this tile's field")
    window = (slice(r0, r1), slice(c0, c1))
    stack = np.empty((len(bands), r1 - r0, c1 - c0), dtype=np.float32)
    for k, (i, j) in enumerate(bands):
        signal = tile.images[i, j][window] - tile.darks[tile_dark[i, j]][window]
        glass = flat.images[i, j][window] - flat.darks[flat_dark[i, j]][window]
        np.maximum(glass, np.float32(_MIN_FLAT_DN), out=glass)
        stack[k] = signal / glass
    crop = Affine2D(nominal.matrix, nominal.offset - np.array([c0, r0], dtype=np.float64))
    energy = edge_energy(stack)
    found = register_grid(
        stack,
        centres,
        manifest.pad_size_um,
        manifest.pad_pitch_um,
        crop,
        model=settings.registration_model,
        energy=energy,
    )
    shifted = Affine2D(
        found.transform.matrix, found.transform.offset + np.array([c0, r0], dtype=np.float64)
    )
    return Registration(
        transform=shifted,
        method=found.method,
        residual_px=found.residual_px,
        max_residual_px=found.max_residual_px,
        pads_measured=found.pads_measured,
        pad_index=found.pad_index,
        pad_residual_px=found.pad_residual_px,
        shift_px=found.shift_px,
        reliable=found.reliable,
    )


@dataclass(frozen=True)
class _Stats:
    mean: FloatArray  # (n, P, B)
    spread: FloatArray
    saturated: NDArray[np.bool_]  # (n,) a region pixel at full scale in the tile or the flat
    flat_level: FloatArray  # (n, P, B) mean flat signal above its dark, DN


def _pad_statistics(
    tile: CubeSection,
    flat: CubeSection,
    regions: _Regions,
    gain: FloatArray,
    tile_dark: NDArray[np.int64],
    flat_dark: NDArray[np.int64],
    saturation_dn: float | None,
) -> _Stats:
    """Mean and spread of T per pad and band: every band gathered at the pads' pixels at once
    (float32, as stored), per-pad sums by the sparse indicator in float64, the spread from
    deviations about each pad's mean (two passes: no cancellation)."""
    p, b = gain.shape
    n = regions.pads.size
    if n == 0:
        empty = np.zeros((0, p, b))
        return _Stats(empty, empty.copy(), np.zeros(0, dtype=bool), empty.copy())
    px = regions.pixels
    h, w = tile.shape
    signal = np.take(tile.images.reshape(p * b, h * w), px, axis=1)
    glass = np.take(flat.images.reshape(p * b, h * w), px, axis=1)
    saturated = np.zeros(n, dtype=bool)
    if saturation_dn is not None:
        hot: NDArray[np.bool_] = np.asarray(
            (signal >= saturation_dn).any(axis=0) | (glass >= saturation_dn).any(axis=0)
        )
        saturated = regions.sums(hot[None, :].astype(np.float32))[:, 0] > 0
    tile_darks = np.take(tile.darks.reshape(-1, h * w), px, axis=1)
    flat_darks = np.take(flat.darks.reshape(-1, h * w), px, axis=1)
    td, fd = tile_dark.ravel(), flat_dark.ravel()
    scale = np.nan_to_num(gain.ravel(), nan=0.0).astype(np.float32)
    for k in range(p * b):
        if td[k] < 0:  # band incomplete or unusable: NaN, and the pad comes out MISSING
            signal[k] = np.nan
            continue
        signal[k] -= tile_darks[td[k]]
        glass[k] -= flat_darks[fd[k]]
    counts = regions.counts.astype(np.float64)[:, None]
    flat_level = regions.sums(glass) / counts
    np.maximum(glass, np.float32(_MIN_FLAT_DN), out=glass)
    t = signal
    t /= glass
    t *= scale[:, None]
    mean = regions.sums(t) / counts  # (n, K)
    t -= mean.T.astype(np.float32)[:, regions.label]
    t *= t
    squares = regions.sums(t)
    # Sample std; a one-pixel region has no spread to measure: 0, not NaN (NaN means MISSING).
    spread = np.where(counts > 1, np.sqrt(squares / np.maximum(counts - 1, 1)), 0.0)
    spread = np.where(np.isnan(mean), np.nan, spread)
    return _Stats(
        mean=mean.reshape(n, p, b),
        spread=spread.reshape(n, p, b),
        saturated=saturated,
        flat_level=flat_level.reshape(n, p, b),
    )


def _flags(
    tile: CubeSection,
    flat: CubeSection,
    regions: _Regions,
    registration: Registration,
    stats: _Stats,
    settings: ExtractionSettings,
) -> NDArray[np.uint16]:
    """PadFlag bits of every measured pad of one tile (see :class:`ExtractionSettings`)."""
    n = regions.pads.size
    flags = np.zeros(n, dtype=np.uint16)
    full_scale = _full_scale(tile.attrs)
    band_bits = int(np.bitwise_or.reduce(tile.band_flags, axis=None)) | int(
        np.bitwise_or.reduce(flat.band_flags, axis=None)
    )
    if full_scale is not None:
        flags[stats.saturated] |= np.uint16(PadFlag.SATURATED)
        dim = np.nanmin(stats.flat_level.reshape(n, -1), axis=1, initial=np.inf)
        flags[dim < settings.low_signal_fraction * full_scale] |= np.uint16(PadFlag.LOW_SIGNAL)
    elif band_bits & BandFlag.SATURATED:  # no full scale to check pixels against: trust the band
        flags |= np.uint16(PadFlag.SATURATED)
    if band_bits & BandFlag.LOW_SIGNAL:
        flags |= np.uint16(PadFlag.LOW_SIGNAL)
    if not registration.reliable or (
        registration.residual_px > settings.max_registration_residual_px
    ):
        flags |= np.uint16(PadFlag.REGISTRATION_DOUBTFUL)
    spread = np.nan_to_num(stats.spread.reshape(n, -1), nan=0.0).max(axis=1, initial=0.0)
    flags[spread > settings.max_spread] |= np.uint16(PadFlag.NON_UNIFORM)
    mean = stats.mean.reshape(n, -1)
    glass_like = np.all(np.abs(mean - 1.0) < settings.glass_tolerance, axis=1)
    flags[glass_like | np.isnan(mean).any(axis=1)] |= np.uint16(PadFlag.MISSING)
    return flags


# -- one array --------------------------------------------------------------------------------


def merge_tiles(
    manifest: ChipManifest,
    array_name: str,
    tiles: Sequence[TileSpectra],
    settings: ExtractionSettings,
    provenance: Mapping[str, Any] | None = None,
) -> ArraySpectra:
    """Every pad of the array from the tile where it lies furthest from the field edge; pads
    no tile holds are MISSING with NaN spectra."""
    if not tiles:
        raise ValueError(f"array {array_name}: no tiles to merge")
    first = tiles[0]
    for t in tiles[1:]:
        if (
            t.polarization != first.polarization
            or t.wavelength_nm.shape != (first.wavelength_nm.shape)
            or not np.allclose(t.wavelength_nm, first.wavelength_nm, rtol=0, atol=1e-6)
        ):
            raise ValueError(
                f"array {array_name}: tile {t.source} has other bands than {first.source}"
            )
    rows = manifest.pads_of(array_name)
    n, q, w = rows.size, len(first.polarization), first.wavelength_nm.size
    position = {int(r): k for k, r in enumerate(rows)}
    best = np.full(n, -np.inf)
    transmission = np.full((n, q, w), np.nan)
    spread = np.full((n, q, w), np.nan)
    counts = np.zeros((n, q), dtype=np.int32)
    flags = np.full(n, PadFlag.MISSING, dtype=np.uint16)
    for t in tiles:
        for i, row in enumerate(t.pad_rows):
            k = position[int(row)]
            if t.edge_distance_px[i] > best[k]:
                best[k] = t.edge_distance_px[i]
                transmission[k] = t.transmission[i]
                spread[k] = t.spread[i]
                counts[k] = t.pixel_count[i]
                flags[k] = t.flags[i]
    pads: PadTable = manifest.pads.select(np.isin(np.arange(len(manifest.pads)), rows))
    return ArraySpectra.from_pads(
        pads,
        transmission=transmission,
        spread=spread,
        pixel_count=counts,
        flags=flags,
        wavelength_nm=first.wavelength_nm,
        polarization=first.polarization,
        hypercubes=[t.source for t in tiles],
        chip_id=manifest.chip_id,
        manifest_sha256=manifest.content_sha256(),
        array_name=array_name,
        registration_method=first.registration.method,
        registration_residual_px=max(t.registration.residual_px for t in tiles),
        erosion_margin_um=settings.margin_um,
        flag_thresholds=settings.thresholds(),
        reference_compensation=settings.reference,
        provenance={
            "transmission_relative_to": "bare substrate (flat)",
            "registration": {t.source: t.registration.describe() for t in tiles},
            **(provenance or {}),
        },
    )


@dataclass(frozen=True)
class ArrayResult:
    """What extracting one array produced (small: it travels back from a Dask worker)."""

    array_name: str
    spectra: ArraySpectra = field(repr=False)
    tiles: int
    hypercube_bytes: int


def extract_array(
    tile_paths: Sequence[Path],
    manifest: ChipManifest,
    array_name: str,
    settings: ExtractionSettings,
    *,
    flats: FlatCache | None = None,
    on_tile: Callable[[TileSpectra], None] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ArrayResult:
    """Extract every tile of one array, then merge (``on_tile`` sees each tile when done)."""
    if not tile_paths:
        raise ValueError(f"array {array_name}: no hypercube tiles given")
    cache = flats or FlatCache()
    done = []
    for path in sorted(Path(p) for p in tile_paths):
        tile = extract_tile(path, manifest, array_name, settings, cache)
        log.info(
            "%s: %d pads, registration %.3f px rms (%d pads)",
            path.name,
            tile.pad_rows.size,
            tile.registration.residual_px,
            tile.registration.pad_index.size,
        )
        done.append(tile)
        if on_tile is not None:
            on_tile(tile)
    spectra = merge_tiles(manifest, array_name, done, settings, provenance)
    return ArrayResult(array_name, spectra, len(done), sum(t.nbytes for t in done))

"""A whole wafer of pads printing an image (structural colour), written as OASIS + manifest by
streaming, tile by tile.

The lab prints a colour image as structural colour: each distinct colour of the image (a
*palette entry*) has one designed unit cell, and every pad of the wafer takes the design of the
image pixel above it. A 100 mm disc of 5 µm pads is a 20,000 x 20,000 grid, 3.1e8 pads inside
the disc: far more than a chip (``gds_writer`` makes a chip in memory, which at this size would
be tens of GB). Here nothing grows with the wafer: the index image is sampled one tile of
``tile_rows`` pad rows at a time, and each tile becomes

* layout records: touching pads make a horizontal run of one design one placement of its unit
  cell, (k*n) x n cells (``gds_writer.row_runs``, the function chips use); runs end at the
  disc's edge and at pads without a design (palette index < 0, e.g. transparent pixels). They
  go straight to the file through :mod:`layout.oasis_stream` (neither gdstk nor KLayout can
  write OASIS without holding the whole layout), one CBLOCK per tile;
* manifest rows (contract 2, the layout ``read_manifest`` reads): the ``/pads`` columns and
  ``/pads/target`` appended to resizable, chunked, gzip+shuffle datasets in whole chunks.

Geometry: the disc (``diameter_mm`` less ``edge_exclusion_mm`` all round) is centred on (0, 0);
the square grid of ``floor(usable diameter / pad)`` pads a side is centred on it, and a pad is
placed only if its whole square lies inside the usable disc (corners tested in exact integer
nm). The image is stretched over the grid's square by nearest neighbour at pad centres (image
row 0 at the top, pad row 0 at the bottom): give a square image for an undistorted print.
The manifest holds one array, ``A0R0`` (role dataset, replica 0) spanning the grid, origin at
the lower-left corner of pad (0, 0), and no fiducials: a wafer is aligned by its flat/notch
and edge, and any cross outside a full-size disc would be off the wafer. The top cell
``WAFER_<chip_id>`` also holds the wafer's edge as a polygon on the outline layer (never
fabricated). The manifest's attributes say ``layout_kind = "wafer"`` and hold the config.

Reading such a manifest back with ``read_manifest`` loads the whole pad table (41 bytes a pad
in memory: 13 GB for a 100 mm wafer of 5 µm pads); a tool that needs a part of it should read
the ``/pads`` datasets by slices (they are chunked by ``CHUNK_ROWS``, row-major by pad row).

Outputs are one unit, as for chips (``common.atomic.atomic_outputs``): both are written to
temporary names and renamed only when both are complete. Unlike chips they are streamed to
disk, not made in memory, so the sizes are estimated first (an upper bound for the layout, a
measured sample for the manifest) and refused with one line if they cannot fit; HDF5 meets the
disk through a file object that never reports a failed write to it (a full disk while HDF5
flushes crashes the process, h5py#914), and the failure is raised once HDF5 has closed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.atomic import DISK_FULL_ERRNOS, atomic_outputs, check_targets, disk_full
from common.values import Bounds
from common.versioned_hdf5 import write_attrs, write_version
from layout import material as film
from layout.chip import CHIP_BOUNDS, cells_per_pad
from layout.design import DesignLibrary
from layout.gds_writer import row_runs, unit_cell_name
from layout.layers import Layer
from layout.library_file import write_library_group
from layout.manifest import SCHEMA, SCHEMA_VERSION, ArrayTable, Role
from layout.material import DEFAULT_MATERIAL
from layout.oasis_stream import (
    OasisStream,
    deflate_raw,
    placement_bytes_bound,
    placements,
    polygon,
)
from layout.polygons import DEFAULT_TOLERANCE_NM, NM_PER_UM, design_polygons

log = logging.getLogger(__name__)

NM_PER_MM = 1_000_000
ARRAY_NAME = "A0R0"
CHUNK_ROWS = 1 << 18
"""Pad-table rows per HDF5 chunk (2 MB of float64): big enough to compress well, small enough
that a reader of a few pads decompresses little."""
_PAD_DTYPES: dict[str, type[np.generic]] = {
    "array_id": np.int32,
    "replica": np.int32,
    "role": np.int8,
    "row": np.int32,
    "col": np.int32,
    "x_um": np.float64,
    "y_um": np.float64,
    "design_id": np.int64,
    "target": np.int32,
}
_MANIFEST_MARGIN = 1.3  # the sampled bytes per pad times this, plus the fixed part
_MANIFEST_FIXED_BYTES = 4 << 20  # header, arrays, designs, chunk index
_OUTLINE_VERTICES = 720
_GDSTK_SCALING = 1e-6 / 1e-9  # what gdstk multiplies µm by for a 1 nm grid: 999.9999999999999

WAFER_BOUNDS = {
    "diameter_mm": Bounds(0.0, 450.0, unit="mm", lo_open=True),
    "pad_size_um": CHIP_BOUNDS["pad_size_um"],
    "thickness_nm": CHIP_BOUNDS["thickness_nm"],
    "tile_rows": Bounds(1, 100_000, integer=True),
    "edge_exclusion_mm": Bounds(0.0, 225.0, unit="mm"),
    "compression_level": Bounds(0, 9, integer=True),
    "tolerance_nm": Bounds(0.0, 1.0, unit="nm", lo_open=True),
}


@dataclass(frozen=True)
class WaferConfig:
    """A disc of touching square pads; lengths carry their unit (mm for the wafer, µm for pads,
    nm for the film and polygons). ``tile_rows`` pad rows are made and written at a time: it
    bounds the memory (of the order of 100 bytes per pad of a tile at its widest: 0.5 GB for
    256 rows of a 100 mm disc of 5 µm pads) and changes nothing in the files but where the
    layout's CBLOCKs begin."""

    thickness_nm: float
    diameter_mm: float = 100.0
    pad_size_um: float = 5.0
    material: str = DEFAULT_MATERIAL
    chip_id: str = "wafer"
    tile_rows: int = 256
    edge_exclusion_mm: float = 0.0
    compression_level: int = 6  # DEFLATE level of the OASIS CBLOCKs; 0: none
    tolerance_nm: float = DEFAULT_TOLERANCE_NM  # curve approximation of the unit cells

    def __post_init__(self) -> None:
        for name, bounds in WAFER_BOUNDS.items():
            bounds.check(name, getattr(self, name))
        film.check_name(self.material, "material")
        if not (
            0 < len(self.chip_id) <= 64
            and self.chip_id.isascii()
            and all(c.isalnum() or c in "-_." for c in self.chip_id)
        ):
            raise ValueError(
                f"chip_id {self.chip_id!r} must be 1-64 ASCII letters, digits, '-', '_' or '.'"
            )
        if not self.edge_exclusion_mm < self.diameter_mm / 2:
            raise ValueError(
                f"edge_exclusion_mm {self.edge_exclusion_mm} leaves nothing of a "
                f"{self.diameter_mm} mm wafer; use < {self.diameter_mm / 2:g}"
            )
        pad_nm = self.pad_size_um * NM_PER_UM
        if abs(pad_nm - round(pad_nm)) > 1e-6:
            raise ValueError(
                f"pad_size_um {self.pad_size_um} is not a whole number of nm (the layout grid)"
            )
        if self.usable_diameter_nm < pad_nm * math.sqrt(2):
            raise ValueError(
                f"a {self.diameter_mm} mm disc (less {self.edge_exclusion_mm} mm edge) holds no "
                f"whole {self.pad_size_um} µm pad"
            )

    @property
    def pad_nm(self) -> int:
        return round(self.pad_size_um * NM_PER_UM)

    @property
    def usable_diameter_nm(self) -> float:
        return (self.diameter_mm - 2 * self.edge_exclusion_mm) * NM_PER_MM

    @property
    def grid_side(self) -> int:
        """Pads along a side of the grid's square (20,000 for 100 mm of 5 µm pads)."""
        return int(self.usable_diameter_nm // self.pad_nm)


@dataclass(frozen=True)
class WaferGrid:
    """Where pads go: the grid's lower-left corner (nm, disc centre at 0) and, per pad row, the
    columns ``[lo, hi)`` whose squares lie wholly inside the usable disc."""

    side: int
    pad_nm: int
    origin_nm: int
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]

    @property
    def pads_inside(self) -> int:
        return int((self.hi - self.lo).sum())

    @property
    def rows_used(self) -> tuple[int, int]:
        """First and one-past-last pad row holding any pad."""
        used = np.flatnonzero(self.hi > self.lo)
        return (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)


def wafer_grid(config: WaferConfig) -> WaferGrid:
    """Per-row column intervals of the pads inside the disc, exact in integer nm: a pad is in
    when all four corners are within the usable radius (x^2 + y^2 <= R^2)."""
    n, pad = config.grid_side, config.pad_nm
    origin = -((n * pad) // 2)
    radius = config.usable_diameter_nm / 2
    y0 = origin + np.arange(n, dtype=np.int64) * pad
    y_far = np.maximum(np.abs(y0), np.abs(y0 + pad))
    room = np.floor(radius * radius - (y_far * y_far).astype(np.float64))
    room_int = np.where(room >= 0, room, -1).astype(np.int64)
    x_lim = np.floor(np.sqrt(np.maximum(room, 0))).astype(np.int64)
    x_lim += ((x_lim + 1) ** 2 <= room_int).astype(np.int64)  # float sqrt off by one either way
    x_lim -= (x_lim**2 > room_int).astype(np.int64)
    # Column c spans [origin + c*pad, origin + (c+1)*pad]; both ends within +-x_lim.
    lo = -((-(-x_lim - origin)) // pad)
    hi = (x_lim - origin) // pad
    lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
    empty = (room_int < 0) | (hi <= lo)
    return WaferGrid(n, pad, int(origin), np.where(empty, 0, lo), np.where(empty, 0, hi))


@dataclass(frozen=True)
class WaferEstimate:
    """What a wafer will take, before it is written: pads (those inside the disc, before the
    image's empty pixels are taken out), an upper bound on runs, and the bytes of both files
    from sample tiles written as they will be (compressed), times a margin, for the runs and
    pads at most. The layout's uncompressed bound per run is kept beside it."""

    pads_max: int
    runs_max: int
    layout_bytes: int
    manifest_bytes: int
    placement_bytes: int  # per run, at most, uncompressed
    layout_bytes_per_run: float  # of the samples, with the margin
    manifest_bytes_per_pad: float  # of the samples, before the margin


@dataclass(frozen=True)
class WaferStats:
    """What ``write_wafer`` wrote and what it cost. ``peak_rss_bytes`` is the process's peak
    resident memory so far (``getrusage``), the wafer's or anything before it in the process."""

    pads: int
    runs: int
    tiles: int
    grid_side: int
    layout_bytes: int
    manifest_bytes: int
    estimate: WaferEstimate
    wall_s: float
    peak_rss_bytes: int

    @property
    def pads_per_s(self) -> float:
        return self.pads / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pads_per_s"] = self.pads_per_s
        return out


@dataclass(frozen=True)
class _Palette:
    """The palette reduced to what the layout needs: one cell per distinct design."""

    designs: DesignLibrary  # distinct designs, in order of first palette entry
    cell_of_entry: NDArray[np.int64]  # palette row -> row of ``designs`` (OASIS refnum), -1 unused
    cells_per_pad: NDArray[np.int64]  # per distinct design
    period_nm: NDArray[np.int64]
    design_id_of_entry: NDArray[np.int64]


def _check_inputs(
    index_image: NDArray[np.integer],
    palette: DesignLibrary,
    target_ids: tuple[str, ...],
    config: WaferConfig,
    grid: WaferGrid,
) -> _Palette:
    """One-line ValueErrors for inputs that cannot make a wafer; the palette reduced to the
    designs the wafer uses."""
    image = np.asarray(index_image)
    if image.ndim != 2 or image.size == 0 or image.dtype.kind not in "iu":
        raise ValueError(
            f"index image must be a non-empty 2-D integer array (H, W), got {image.dtype} "
            f"of shape {image.shape}"
        )
    if len(palette) == 0:
        raise ValueError("palette is empty: give one design per palette index")
    if len(target_ids) != len(palette) or not all(isinstance(t, str) for t in target_ids):
        raise ValueError(
            f"target_ids has {len(target_ids)} names for a palette of {len(palette)} designs: "
            "give one string per palette entry"
        )
    top = int(image.max())
    if top >= len(palette):
        raise ValueError(
            f"index image holds palette index {top}; the palette has {len(palette)} entries "
            f"(0..{len(palette) - 1}, negative: no pad)"
        )
    periods = palette.period_nm
    bad = np.abs(periods - np.round(periods)) > 1e-9
    if bad.any():
        raise ValueError(
            f"palette period {float(periods[bad][0])} nm is not a whole number of nm (the "
            "layout grid)"
        )
    for period in np.unique(periods):  # every entry, used or not: the palette must fit the pad
        cells_per_pad(float(period), config.pad_size_um)
    used = _used_entries(image, grid, len(palette))
    if not used.any():
        raise ValueError(
            "the index image places no pad inside the disc (every sampled pixel is negative)"
        )
    # One cell per distinct design of the entries the wafer uses, in order of first entry.
    ids = palette.design_id.astype(np.int64)
    entries = np.flatnonzero(used)
    _, first = np.unique(ids[entries], return_index=True)
    rows = entries[np.sort(first)]
    designs = palette.take(rows)
    cell_of_entry = np.full(len(palette), -1, np.int64)
    cell_of_id = {int(d): i for i, d in enumerate(designs.design_id)}
    for e in entries:
        cell_of_entry[e] = cell_of_id[int(ids[e])]
    per_pad = np.array(
        [cells_per_pad(float(p), config.pad_size_um) for p in designs.period_nm], np.int64
    )
    return _Palette(
        designs, cell_of_entry, per_pad, np.round(designs.period_nm).astype(np.int64), ids
    )


def _image_blocks(image: NDArray[np.integer]) -> Iterator[tuple[int, NDArray[np.integer]]]:
    """Blocks of whole image rows of about 4 Mi pixels: what a pass over the image holds (an
    image as fine as the wafer's grid has as many pixels as it has pads)."""
    step = max(1, (1 << 22) // image.shape[1])
    for r0 in range(0, image.shape[0], step):
        yield r0, image[r0 : r0 + step]


def _used_entries(image: NDArray[np.integer], grid: WaferGrid, entries: int) -> NDArray[np.bool_]:
    """Which palette entries some pad of the disc samples, without visiting every pad: the pad
    rows sampling one image row are adjacent and their column intervals are centred on the
    disc, so together they sample the image columns between those of the widest one."""
    h, w = image.shape
    rows_of = _sampling(grid.side, h, flip=True)
    cols_of = _sampling(grid.side, w, flip=False)
    rows = np.flatnonzero(grid.hi > grid.lo)
    first = np.full(h, w, np.int64)  # per image row: sampled image columns first..last
    last = np.full(h, -1, np.int64)
    np.minimum.at(first, rows_of[rows], cols_of[grid.lo[rows]])
    np.maximum.at(last, rows_of[rows], cols_of[grid.hi[rows] - 1])
    sampled = np.zeros(w, bool)
    sampled[cols_of] = True
    columns = np.arange(w)[None, :]
    used = np.zeros(entries + 1, np.int64)
    for r0, block in _image_blocks(image):
        lo, hi = first[r0 : r0 + len(block), None], last[r0 : r0 + len(block), None]
        values = block[sampled[None, :] & (columns >= lo) & (columns <= hi)]
        used += np.bincount(np.maximum(values, -1).astype(np.int64) + 1, minlength=entries + 1)
    return used[1:] > 0


def _runs_per_image_row(image: NDArray[np.integer], pal: _Palette) -> NDArray[np.int64]:
    """Runs of one cell along each image row (empty pixels in none), block by block."""
    out = np.zeros(image.shape[0], np.int64)
    for r0, block in _image_blocks(image):
        cells = np.where(block >= 0, pal.cell_of_entry[np.maximum(block, 0)], -1)
        begins = (cells[:, 1:] != cells[:, :-1]) & (cells[:, 1:] >= 0)
        out[r0 : r0 + len(block)] = begins.sum(axis=1) + (cells[:, 0] >= 0)
    return out


def _sampling(n: int, size: int, flip: bool) -> NDArray[np.int64]:
    """Image index of each of ``n`` pad rows/columns: nearest neighbour at pad centres."""
    k = np.arange(n, dtype=np.int64)
    if flip:
        k = n - 1 - k
    return ((2 * k + 1) * size) // (2 * n)


@dataclass(frozen=True)
class _Tile:
    row0: int
    col0: int
    entry: NDArray[np.int32]  # (rows, cols) palette index, -1 no pad


def _tiles(
    image: NDArray[np.integer], grid: WaferGrid, tile_rows: int, only: list[int] | None = None
) -> Iterator[_Tile]:
    """The palette index of every pad, ``tile_rows`` rows at a time, cropped to the columns the
    disc uses in those rows."""
    h, w = image.shape
    rows_of = _sampling(grid.side, h, flip=True)
    cols_of = _sampling(grid.side, w, flip=False)
    first, last = grid.rows_used
    starts = list(range(first, last, tile_rows))
    for t in only if only is not None else range(len(starts)):
        r0 = starts[t]
        r1 = min(r0 + tile_rows, last)
        lo, hi = grid.lo[r0:r1], grid.hi[r0:r1]
        c0, c1 = int(lo[hi > lo].min()), int(hi.max())
        entry = image[rows_of[r0:r1, None], cols_of[None, c0:c1]].astype(np.int32)
        cols = np.arange(c0, c1, dtype=np.int64)[None, :]
        inside = (cols >= lo[:, None]) & (cols < hi[:, None])
        entry[~inside | (entry < 0)] = -1
        yield _Tile(r0, c0, entry)


def tile_count(grid: WaferGrid, tile_rows: int) -> int:
    first, last = grid.rows_used
    return -(-(last - first) // tile_rows)


def _pad_columns(tile: _Tile, grid: WaferGrid, pal: _Palette) -> dict[str, NDArray[Any]]:
    """The manifest rows of a tile's pads, row-major, in the dtypes ``PadTable`` has."""
    rr, cc = np.nonzero(tile.entry >= 0)
    entry = tile.entry[rr, cc]
    row = rr.astype(np.int64) + tile.row0
    col = cc.astype(np.int64) + tile.col0
    n = rr.size
    half = grid.pad_nm / 2
    return {
        "array_id": np.zeros(n, np.int32),
        "replica": np.zeros(n, np.int32),
        "role": np.full(n, Role.DATASET, np.int8),
        "row": row.astype(np.int32),
        "col": col.astype(np.int32),
        "x_um": (grid.origin_nm + col * grid.pad_nm + half) / NM_PER_UM,
        "y_um": (grid.origin_nm + row * grid.pad_nm + half) / NM_PER_UM,
        "design_id": pal.design_id_of_entry[entry],
        "target": entry.astype(np.int32),
    }


def _tile_placements(tile: _Tile, grid: WaferGrid, pal: _Palette) -> tuple[bytes, int]:
    """A tile's runs as OASIS PLACEMENT records, and how many."""
    cell_grid = np.where(tile.entry >= 0, pal.cell_of_entry[np.maximum(tile.entry, 0)], -1)
    runs = row_runs(cell_grid, -1)
    if not len(runs):
        return b"", 0
    n = pal.cells_per_pad[runs.value]
    step = pal.period_nm[runs.value]
    x = grid.origin_nm + (tile.col0 + runs.start) * grid.pad_nm
    y = grid.origin_nm + (tile.row0 + runs.row) * grid.pad_nm
    return placements(runs.value, x, y, runs.length * n, n, step, step), len(runs)


def _shuffled_deflate_bytes(values: NDArray[Any]) -> int:
    """Bytes of ``values`` as HDF5's shuffle + gzip level 1 stores them, chunk by chunk."""
    total = 0
    raw = np.ascontiguousarray(values)
    size = raw.dtype.itemsize
    for start in range(0, raw.size, CHUNK_ROWS):
        part = raw[start : start + CHUNK_ROWS].view(np.uint8).reshape(-1, size)
        total += len(zlib.compress(np.ascontiguousarray(part.T).tobytes(), 1))
    return total


def estimate_wafer(
    index_image: NDArray[np.integer],
    palette: DesignLibrary,
    target_ids: tuple[str, ...],
    config: WaferConfig,
) -> WaferEstimate:
    """Sizes before writing (what ``write_wafer`` checks against the free space; a CLI's dry
    run can print it). Runs: per pad row at most the runs of the image row it samples (a
    nearest-neighbour resampling and a cut to the disc add none), and at most its pads."""
    grid = wafer_grid(config)
    pal = _check_inputs(index_image, palette, target_ids, config, grid)
    return _estimate(np.asarray(index_image), pal, config, grid)


def _estimate(
    image: NDArray[np.integer], pal: _Palette, config: WaferConfig, grid: WaferGrid
) -> WaferEstimate:
    image_runs = _runs_per_image_row(image, pal)
    rows_of = _sampling(grid.side, image.shape[0], flip=True)
    runs_max = int(np.minimum(image_runs[rows_of], grid.hi - grid.lo).sum())
    coordinate = abs(grid.origin_nm) + grid.side * grid.pad_nm
    per_run = placement_bytes_bound(
        len(pal.designs),
        coordinate,
        int(grid.side * pal.cells_per_pad.max()),
        int(pal.period_nm.max()),
    )
    tiles = tile_count(grid, config.tile_rows)
    cells_bytes = sum(len(r) for r in _unit_cell_records(pal, config.tolerance_nm))
    fixed = 4096 + cells_bytes + 16 * _OUTLINE_VERTICES + tiles * 24
    # Three sample tiles (a quarter, half and three quarters down) written as they will be.
    picks = sorted({tiles // 4, tiles // 2, (3 * tiles) // 4})
    stored = pads = placed = runs = 0
    level = config.compression_level
    for tile in _tiles(image, grid, config.tile_rows, only=picks):
        columns = _pad_columns(tile, grid, pal)
        pads += columns["row"].size
        stored += sum(_shuffled_deflate_bytes(v) for v in columns.values())
        records, count = _tile_placements(tile, grid, pal)
        runs += count
        placed += len(deflate_raw(records, level) if level else records)
    per_pad = (
        stored / pads if pads else float(sum(np.dtype(t).itemsize for t in _PAD_DTYPES.values()))
    )
    per_ref = min(float(per_run), _MANIFEST_MARGIN * placed / runs) if runs else float(per_run)
    manifest = int(_MANIFEST_FIXED_BYTES + _MANIFEST_MARGIN * per_pad * grid.pads_inside)
    layout = int(fixed + runs_max * per_ref)
    return WaferEstimate(grid.pads_inside, runs_max, layout, manifest, per_run, per_ref, per_pad)


def _unit_cell_records(pal: _Palette, tolerance_nm: float) -> list[bytes]:
    """Each distinct design's polygons as POLYGON records, vertices on the nm grid exactly as
    gdstk puts them on a chip (times its scaling ``unit / precision``, then ``llround``), so a
    design has the same vertices on a chip and on a wafer (curve vertices at half a nanometre
    go down, not up: the scaling is a hair under 1000)."""
    out = []
    for i in range(len(pal.designs)):
        records = []
        for p in design_polygons(pal.designs.design(i), tolerance_nm):
            nm = np.asarray(p.points) * _GDSTK_SCALING
            whole = np.trunc(nm)  # x - trunc(x) is exact; floor(x + 0.5) is not
            pts = (whole + np.sign(nm) * (np.abs(nm - whole) >= 0.5)).astype(np.int64)
            records.append(polygon(p.layer, p.datatype, pts))
        out.append(b"".join(records))
    return out


def _outline_record(config: WaferConfig) -> bytes:
    """The wafer's edge as a polygon on the outline layer (for viewers; never fabricated)."""
    r = config.diameter_mm * NM_PER_MM / 2
    t = np.arange(_OUTLINE_VERTICES) * (2 * np.pi / _OUTLINE_VERTICES)
    pts = np.round(np.stack([r * np.cos(t), r * np.sin(t)], axis=1)).astype(np.int64)
    return polygon(Layer.OUTLINE.number, Layer.OUTLINE.datatype, pts)


class _NeverFailingFile:
    """The file HDF5 writes the manifest through: a write the disk refuses (full, quota) is
    remembered and reported as done, so HDF5 never meets a failed write (it can crash on one
    while closing, h5py#914); ``failure`` is raised by the caller once HDF5 has closed."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("w+b")
        self.failure: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.failure is None:
            try:
                self._f.write(data)
            except OSError as exc:
                self.failure = exc
        return len(memoryview(data))

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._f.readinto(buffer)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.failure is None:
            try:
                return self._f.truncate(size)
            except OSError as exc:
                self.failure = exc
        return self._f.tell() if size is None else size

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._f.flush()
            except OSError as exc:
                self.failure = exc

    def sync(self) -> None:
        """Flush and fsync (a network file system may only report a full disk here)."""
        self.flush()
        if self.failure is None:
            try:
                os.fsync(self._f.fileno())
            except OSError as exc:
                self.failure = exc

    def close(self) -> None:
        self._f.close()


class _Column:
    """One pad-table column, appended in whole chunks (a partial chunk written and then
    topped up would be decompressed and compressed again)."""

    def __init__(self, group: h5py.Group, name: str, dtype: type[np.generic]) -> None:
        self.ds = group.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            dtype=dtype,
            chunks=(CHUNK_ROWS,),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
        self.pending: NDArray[Any] = np.zeros(0, dtype)
        self.size = 0

    def append(self, values: NDArray[Any]) -> None:
        data = np.concatenate([self.pending, values]) if self.pending.size else values
        whole = (data.size // CHUNK_ROWS) * CHUNK_ROWS
        if whole:
            self._write(data[:whole])
        self.pending = data[whole:].copy()

    def finish(self) -> None:
        if self.pending.size:
            self._write(self.pending)
            self.pending = self.pending[:0]

    def _write(self, data: NDArray[Any]) -> None:
        self.ds.resize((self.size + data.size,))
        self.ds[self.size : self.size + data.size] = data
        self.size += data.size


def _manifest_header(
    f: h5py.File, config: WaferConfig, grid: WaferGrid, pal: _Palette, target_ids: tuple[str, ...]
) -> dict[str, _Column]:
    """Everything of the manifest but the pad rows and the layout's hash, in the layout
    ``layout.manifest.write_manifest_file`` writes (and ``read_manifest`` reads)."""
    write_version(f, SCHEMA, SCHEMA_VERSION)
    f.attrs["chip_id"] = config.chip_id
    f.attrs["thickness_nm"] = config.thickness_nm
    f.attrs[film.ATTRIBUTE] = config.material
    f.attrs["pad_size_um"] = config.pad_size_um
    f.attrs["pad_pitch_um"] = config.pad_size_um  # pads touch
    f.attrs["roles"] = json.dumps({r.name.lower(): int(r) for r in Role})
    origin_um = grid.origin_nm / NM_PER_UM
    table = ArrayTable(
        [ARRAY_NAME],
        np.array([0], np.int32),
        np.array([0], np.int32),
        np.array([Role.DATASET], np.int8),
        np.array([origin_um]),
        np.array([origin_um]),
        np.array([grid.side], np.int32),
        np.array([grid.side], np.int32),
    )
    arrays = f.create_group("arrays")
    arrays.create_dataset("name", data=np.array(table.name, dtype=h5py.string_dtype()))
    for fld in fields(ArrayTable):
        if fld.name != "name":
            arrays.create_dataset(fld.name, data=getattr(table, fld.name))
    pads = f.create_group("pads")
    columns = {name: _Column(pads, name, dtype) for name, dtype in _PAD_DTYPES.items()}
    names = np.array(target_ids, dtype=h5py.string_dtype())
    f.create_group("targets").create_dataset("target_id", data=names)
    write_library_group(f.create_group("designs"), pal.designs)
    return columns


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _check_space(layout: Path, manifest: Path, estimate: WaferEstimate) -> None:
    """Both files' estimates must fit their file systems' free space (``require_free_space``
    reads ``shutil.disk_usage`` too, but wants exact sizes; these are estimates, said so)."""
    need: dict[int, list[tuple[Path, int]]] = {}
    for path, size in ((layout, estimate.layout_bytes), (manifest, estimate.manifest_bytes)):
        need.setdefault(path.parent.stat().st_dev, []).append((path, size))
    for group in need.values():
        total = sum(s for _, s in group)
        free = shutil.disk_usage(group[0][0].parent).free
        if total > free:
            names = " and ".join(str(p) for p, _ in group)
            raise disk_full(
                names,
                f"the wafer needs about {total / 1e9:.2f} GB, {free / 1e9:.2f} GB free on "
                f"{group[0][0].parent}",
            )


def write_wafer(
    index_image: NDArray[np.integer],
    palette: DesignLibrary,
    target_ids: tuple[str, ...],
    config: WaferConfig,
    layout_path: Path,
    manifest_path: Path,
    progress: bool = False,
    *,
    force: bool = False,
) -> WaferStats:
    """Write the wafer's OASIS layout and its manifest, streamed tile by tile (see the module).

    ``index_image[h, w]`` is the palette index of an image pixel (negative: no pad there);
    palette row p is its design and ``target_ids[p]`` its name, recorded per pad in the
    manifest. An existing output is refused unless ``force``; a size that cannot fit is
    refused before anything is written; any failure leaves no output and no temporary file.
    """
    start = time.perf_counter()
    layout_path, manifest_path = check_targets([Path(layout_path), Path(manifest_path)])
    for path in (layout_path, manifest_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass force=True to overwrite it")
    image = np.asarray(index_image)
    grid = wafer_grid(config)
    pal = _check_inputs(image, palette, target_ids, config, grid)
    estimate = _estimate(image, pal, config, grid)
    _check_space(layout_path, manifest_path, estimate)
    log.info(
        "wafer %s: %d x %d grid, <= %d pads, <= %d runs; about %.1f MB layout, %.1f MB manifest",
        config.chip_id,
        grid.side,
        grid.side,
        estimate.pads_max,
        estimate.runs_max,
        estimate.layout_bytes / 1e6,
        estimate.manifest_bytes / 1e6,
    )
    pads = runs = 0
    tiles = tile_count(grid, config.tile_rows)
    with atomic_outputs([layout_path, manifest_path]) as (layout_tmp, manifest_tmp):
        sink = _NeverFailingFile(manifest_tmp)
        try:
            with layout_tmp.open("wb") as raw, h5py.File(sink, "w") as h5:
                out = _LayoutFile(raw, layout_path)
                columns = _manifest_header(h5, config, grid, pal, target_ids)
                oas = OasisStream(out, compression_level=config.compression_level)
                names = [unit_cell_name(int(d)) for d in pal.designs.design_id]
                top = f"WAFER_{config.chip_id}"
                oas.cells([*names, top])
                for name, records in zip(
                    names, _unit_cell_records(pal, config.tolerance_nm), strict=True
                ):
                    oas.begin_cell(name)
                    oas.records(records)
                oas.begin_cell(top)
                oas.records(_outline_record(config))
                bar = tqdm(total=tiles, desc="wafer tiles", unit="tile", disable=not progress)
                with bar:
                    for tile in _tiles(image, grid, config.tile_rows):
                        records, count = _tile_placements(tile, grid, pal)
                        oas.records(records)
                        runs += count
                        for name, values in _pad_columns(tile, grid, pal).items():
                            columns[name].append(values)
                        pads += int(np.count_nonzero(tile.entry >= 0))
                        bar.update(1)
                        bar.set_postfix(pads=f"{pads:.3g}", runs=runs)
                for column in columns.values():
                    column.finish()
                oas.close()
                out.sync()
                layout_bytes, layout_sha = oas.bytes_written, oas.sha256
                write_attrs(
                    h5,
                    {
                        "config": asdict(config),
                        "layout_kind": "wafer",
                        "image_shape": list(image.shape),
                        "layout_file": layout_path.name,
                        "layout_format": "oas",
                        "layout_sha256": layout_sha,
                        "polygon_tolerance_nm": config.tolerance_nm,
                    },
                )
            sink.sync()
        except Exception:
            # HDF5 may stumble over what it could not write (reading it back): the write that
            # failed is the error to report.
            if sink.failure is None:
                raise
        finally:
            sink.close()
        if sink.failure is not None:
            if sink.failure.errno in DISK_FULL_ERRNOS:
                raise disk_full(manifest_path) from None
            raise OSError(
                sink.failure.errno, f"writing {manifest_path} failed: {sink.failure.strerror}"
            ) from None
        manifest_bytes = manifest_tmp.stat().st_size
    stats = WaferStats(
        pads,
        runs,
        tiles,
        grid.side,
        layout_bytes,
        manifest_bytes,
        estimate,
        time.perf_counter() - start,
        _peak_rss_bytes(),
    )
    log.info(
        "wafer %s: %d pads in %d runs, %.1f MB layout, %.1f MB manifest, %.0f s",
        config.chip_id,
        pads,
        runs,
        layout_bytes / 1e6,
        manifest_bytes / 1e6,
        stats.wall_s,
    )
    return stats


class _LayoutFile:
    """The layout's temporary file as the OASIS stream writes it: a failed write is one
    ``OSError`` naming the output (a full disk: ``disk_full``)."""

    def __init__(self, f: BinaryIO, output: Path) -> None:
        self._f, self._output = f, output

    def write(self, data: bytes) -> int:
        return self._guard(lambda: self._f.write(data))

    def sync(self) -> None:
        def flush() -> int:
            self._f.flush()
            os.fsync(self._f.fileno())
            return 0

        self._guard(flush)

    def _guard(self, action: Callable[[], int]) -> int:
        try:
            return action()
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full(self._output) from None
            raise OSError(
                exc.errno, f"writing {self._output} failed: {exc.strerror or exc}"
            ) from None

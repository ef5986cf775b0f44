"""Chip manifest -> hierarchical GDSII/OASIS with gdstk.

Hierarchy (nothing flattened, so a 136,530-pad chip stays a few tens of MB): one cell per unit-cell
design ``D<design_id>``; each pad is one AREF of its unit cell (``P/period`` cells a side), and
where pads touch, a horizontal run of pads of one design is one AREF (``row_runs``); each
placed array is a cell ``A<k>R<r>`` / ``A<k>C`` of pad AREFs; the top cell places the arrays,
the fiducial crosses (on the silicon layer, so they are etched and visible), array outlines and
labels. Same manifest and tolerance give byte-identical files: GDS gets a fixed timestamp.

A layout and its manifest are one unit (``write_chip``): both are made in memory first, checked
against the free space, written to temporary names and renamed only when both are complete, so a
failure (a full disk included) leaves the previous pair exactly as it was. Neither library writes
an output itself, because neither survives a full disk: gdstk ignores failed writes (it leaves a
truncated layout and returns normally), and HDF5 (2.0, in h5py 3.16's wheel; h5py#914 since 1.8)
crashes the process: when a dataset's close cannot flush it, closing the file flushes every open
dataset again and dereferences the half-closed one (SIGSEGV in ``H5D__flush_all_cb``). Their
bytes are copied to disk by Python, whose writes report a full disk like any other error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import gdstk
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.atomic import (
    atomic_outputs,
    check_targets,
    hdf5_image,
    require_free_space,
    write_stream,
)
from layout.chip import ChipConfig, cells_per_pad
from layout.layers import Layer
from layout.manifest import ChipManifest, Role, write_manifest_file
from layout.polygons import DEFAULT_TOLERANCE_NM, NM_PER_UM, design_polygons

log = logging.getLogger(__name__)

FIXED_TIMESTAMP = dt.datetime(2000, 1, 1)
Format = Literal["gds", "oas"]


@dataclass(frozen=True)
class RowRuns:
    """Horizontal runs of equal values in a grid, in row-major order of their first cell."""

    row: NDArray[np.int64]
    start: NDArray[np.int64]  # column of the run's first cell
    length: NDArray[np.int64]
    value: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.row.shape[0])


def row_runs(grid: NDArray[np.integer], empty: int = -1, max_length: int | None = None) -> RowRuns:
    """Maximal runs of one value along each row of ``grid`` (R, C), cells equal to ``empty``
    left out, each run cut into pieces of at most ``max_length`` cells (a GDSII AREF holds at
    most 32,767 columns). One pass of numpy, no Python loop over cells: the wafer writer runs
    it on tiles of millions of pads."""
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise ValueError(f"grid must be 2-D (rows, columns), got shape {grid.shape}")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length} must be >= 1")
    rows, cols = grid.shape
    if grid.size == 0:
        none = np.zeros(0, np.int64)
        return RowRuns(none, none, none, none)
    change = np.ones((rows, cols), dtype=bool)
    np.not_equal(grid[:, 1:], grid[:, :-1], out=change[:, 1:])
    first = np.flatnonzero(change)  # every row's column 0 starts a run, so runs end at rows' ends
    length = np.diff(first, append=rows * cols)
    value = grid.ravel()[first].astype(np.int64)
    keep = value != empty
    first, length, value = first[keep], length[keep], value[keep]
    if max_length is not None and length.size and int(length.max()) > max_length:
        pieces = -(-length // max_length)
        owner = np.repeat(np.arange(length.size), pieces)
        piece = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        first = first[owner] + piece * max_length
        length = np.minimum(length[owner] - piece * max_length, max_length)
        value = value[owner]
    row, start = np.divmod(first, cols)
    return RowRuns(row.astype(np.int64), start.astype(np.int64), length.astype(np.int64), value)


def unit_cell_name(design_id: int) -> str:
    """The cell of one unit-cell design, in every layout the project writes (chips, wafers)."""
    return f"D{int(design_id)}"


GDS_MAX_COLUMNS = 32_767
"""GDSII stores an AREF's column and row counts as 2-byte signed integers."""


def _pad_runs(
    manifest: ChipManifest, sel: NDArray[np.intp], max_length: int
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """The runs of touching pads of one design among the pad-table rows ``sel`` of one array:
    (pad-table row of each run's first pad, run length), in pad-table order of the first pads,
    so an array without runs keeps the order (and the bytes) of one reference per pad."""
    pads = manifest.pads
    rows, cols = pads.row[sel].astype(np.int64), pads.col[sel].astype(np.int64)
    width = int(cols.max()) + 1
    flat = rows * width + cols
    if rows.min() < 0 or cols.min() < 0 or np.unique(flat).size != flat.size:
        return sel, np.ones(sel.size, np.int64)  # not a grid: one reference per pad
    # Each grid cell holds its pad's design id; a cell without a pad is -1 and joins no run.
    design = np.full((int(rows.max()) + 1, width), -1, np.int64)
    design.ravel()[flat] = pads.design_id[sel]
    runs = row_runs(design, -1, max_length)
    where = np.full(design.size, -1, np.int64)
    where[flat] = np.arange(sel.size)
    first = where[runs.row * width + runs.start]
    order = np.argsort(first, kind="stable")
    return sel[first[order]], runs.length[order]


def build_gds(
    manifest: ChipManifest,
    config: ChipConfig,
    tolerance_nm: float = DEFAULT_TOLERANCE_NM,
    progress: bool = False,
) -> gdstk.Library:
    """The chip's layout as a gdstk library (see the module's note on the hierarchy).

    Where pads touch (``pad_gap_um == 0``) the unit-cell period tiles a whole row of pads, so a
    horizontal run of k pads of one design is one AREF of k*n x n cells instead of k AREFs of
    n x n: the same silicon, fewer references (an image-like chip repeats designs along rows;
    a dataset chip, whose designs never repeat in a row, keeps its bytes). With a gap each pad
    stays its own AREF."""
    lib = gdstk.Library(name=manifest.chip_id, unit=1e-6, precision=1e-9)
    designs = manifest.designs
    unit_cells: dict[int, tuple[gdstk.Cell, float]] = {}
    for i in tqdm(range(len(designs)), desc="unit cells", unit="cell", disable=not progress):
        design = designs.design(i)
        cell = lib.new_cell(unit_cell_name(int(designs.design_id[i])))
        cell.add(*design_polygons(design, tolerance_nm))
        unit_cells[int(designs.design_id[i])] = (cell, design.period_nm)

    fid = lib.new_cell("FIDUCIAL")
    arm, w = config.fiducial_arm_um, config.fiducial_width_um
    layer, dtype = Layer.SILICON.value
    fid.add(gdstk.rectangle((-arm, -w / 2), (arm, w / 2), layer=layer, datatype=dtype))
    fid.add(gdstk.rectangle((-w / 2, -arm), (w / 2, arm), layer=layer, datatype=dtype))

    top = lib.new_cell(f"CHIP_{manifest.chip_id}")
    pads, arrays = manifest.pads, manifest.arrays
    size = manifest.pad_size_um
    for a, name in enumerate(arrays.name):
        cell = lib.new_cell(name)
        sel = manifest.pads_of(a)
        ox, oy = float(arrays.origin_x_um[a]), float(arrays.origin_y_um[a])
        per_pad = {
            int(d): cells_per_pad(unit_cells[int(d)][1], size)
            for d in np.unique(pads.design_id[sel])
        }
        run_length = np.ones(sel.size, np.int64)
        if config.pad_gap_um == 0 and sel.size > 1:
            longest = GDS_MAX_COLUMNS // max(per_pad.values())
            sel, run_length = _pad_runs(manifest, sel, longest)
        for x, y, did, k in zip(
            pads.x_um[sel] - ox,
            pads.y_um[sel] - oy,
            pads.design_id[sel],
            run_length.tolist(),
            strict=True,
        ):
            unit, period_nm = unit_cells[int(did)]
            n = per_pad[int(did)]
            p = period_nm / NM_PER_UM
            cell.add(
                gdstk.Reference(
                    unit, (x - size / 2, y - size / 2), columns=k * n, rows=n, spacing=(p, p)
                )
            )
        top.add(gdstk.Reference(cell, (ox, oy)))
        w_um = float(arrays.cols[a]) * manifest.pad_pitch_um - config.pad_gap_um
        h_um = float(arrays.rows[a]) * manifest.pad_pitch_um - config.pad_gap_um
        top.add(
            gdstk.rectangle(
                (ox, oy),
                (ox + w_um, oy + h_um),
                layer=Layer.OUTLINE.number,
                datatype=Layer.OUTLINE.datatype,
            )
        )
        label_size = min(20.0, config.array_spacing_um / 3)
        lx, ly = ox, oy + h_um + config.fiducial_offset_um + config.fiducial_arm_um + 2
        top.add(
            *gdstk.text(
                name,
                label_size,
                (lx + 2 * config.fiducial_arm_um, ly),
                layer=Layer.LABEL.number,
                datatype=Layer.LABEL.datatype,
            )
        )
        top.add(
            gdstk.Label(
                name, (ox, oy + h_um), layer=Layer.LABEL.number, texttype=Layer.LABEL.datatype
            )
        )
    fids = pads.role == Role.FIDUCIAL
    for x, y in zip(pads.x_um[fids], pads.y_um[fids], strict=True):
        top.add(gdstk.Reference(fid, (float(x), float(y))))
    return lib


def _check_format(fmt: str) -> None:
    if fmt not in ("gds", "oas"):
        raise ValueError(f"format {fmt!r} must be 'gds' or 'oas'")


@contextlib.contextmanager
def layout_image(
    lib: gdstk.Library, fmt: Format = "gds", name: Path | str = "layout"
) -> Iterator[BinaryIO]:
    """The layout file as gdstk writes it, in an anonymous in-memory file (Linux ``memfd``; a
    file in the system's temporary folder elsewhere), checked to be complete (``name`` is the
    output it is for, in the error if it is not)."""
    _check_format(fmt)
    with contextlib.ExitStack() as stack:
        image: BinaryIO
        target: str | None = None
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"layout.{fmt}", os.MFD_CLOEXEC)
            image = stack.enter_context(os.fdopen(fd, "w+b"))
            target = f"/proc/self/fd/{fd}"
            if not Path(target).exists():  # no /proc: fall back to a temporary file
                target = None
        if target is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            target = str(folder / f"layout.{fmt}")
        if fmt == "gds":
            lib.write_gds(target, timestamp=FIXED_TIMESTAMP)
        else:
            lib.write_oas(target, compression_level=6)
        if not target.startswith("/proc/"):
            image = stack.enter_context(Path(target).open("rb"))
        _check_complete(image, fmt, name)
        yield image


_GDS_ENDLIB = b"\x00\x04\x04\x00"  # the last record of every GDSII stream
_OASIS_MAGIC = b"%SEMI-OASIS\r\n"
_OASIS_END = 2  # record id of the END record, padded to the file's last 256 bytes


def _check_complete(image: BinaryIO, fmt: Format, name: Path | str) -> None:
    """gdstk reports no failed write; a layout cut short (out of memory or disk where it was
    made) lacks its last record, and is refused rather than copied and recorded."""
    size = image.seek(0, io.SEEK_END)
    image.seek(0)
    head = image.read(len(_OASIS_MAGIC))
    tail_len = 4 if fmt == "gds" else 256
    image.seek(max(size - tail_len, 0))
    tail = image.read(tail_len)
    if fmt == "gds":
        complete = size >= 8 and tail == _GDS_ENDLIB
    else:
        complete = head == _OASIS_MAGIC and len(tail) == 256 and tail[0] == _OASIS_END
    if not complete:
        raise OSError(
            f"gdstk could not write the whole {fmt} layout for {name} (it stopped after {size} "
            "bytes: out of memory, or over a file-size limit?); nothing was written"
        )
    image.seek(0)


def stream_sha256(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    stream.seek(0)
    for block in iter(lambda: stream.read(1 << 20), b""):
        h.update(block)
    stream.seek(0)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as f:
        return stream_sha256(f)


def manifest_image(manifest: ChipManifest) -> bytes:
    """The manifest file's bytes, made in memory (see the module's note on HDF5 and full disks)."""
    return hdf5_image(lambda f: write_manifest_file(f, manifest))


def _size(stream: BinaryIO) -> int:
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size


def write_layout(lib: gdstk.Library, path: Path, fmt: Format = "gds") -> None:
    """Write atomically; ``fmt`` picks GDSII or OASIS (far smaller for wafer-scale chips)."""
    (path,) = check_targets([path])
    with layout_image(lib, fmt, path) as image:
        require_free_space({path: _size(image)})
        with atomic_outputs([path]) as (tmp,):
            write_stream(tmp, image, path)


def write_chip(
    manifest: ChipManifest,
    config: ChipConfig,
    layout_path: Path,
    manifest_path: Path,
    fmt: Format = "gds",
    tolerance_nm: float = DEFAULT_TOLERANCE_NM,
    progress: bool = False,
) -> None:
    """Write the layout and its manifest as one unit; the manifest records the layout's name
    and SHA-256.

    Both are made in memory, checked against the free space and written to temporary names;
    only when both are complete are both renamed into place. Any failure, a full disk included
    (one ``OSError`` naming the file), leaves the previous layout and manifest untouched and no
    temporary file behind.
    """
    layout_path, manifest_path = check_targets([layout_path, manifest_path])
    _check_format(fmt)
    lib = build_gds(manifest, config, tolerance_nm, progress)
    with layout_image(lib, fmt, layout_path) as layout:
        attrs = dict(manifest.attrs)
        attrs.update(
            layout_file=layout_path.name,
            layout_format=fmt,
            layout_sha256=stream_sha256(layout),
            polygon_tolerance_nm=tolerance_nm,
        )
        image = manifest_image(replace(manifest, attrs=attrs))
        require_free_space({layout_path: _size(layout), manifest_path: len(image)})
        with atomic_outputs([layout_path, manifest_path]) as (layout_tmp, manifest_tmp):
            write_stream(layout_tmp, layout, layout_path)
            write_stream(manifest_tmp, image, manifest_path)

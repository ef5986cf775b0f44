"""Chip manifest -> hierarchical GDSII/OASIS with gdstk.

Hierarchy (nothing flattened, so a 136,530-pad chip stays a few tens of MB): one cell per unit-cell
design ``D<design_id>``; each pad is one AREF of its unit cell (``P/period`` cells a side); each
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
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Literal

import gdstk
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


def build_gds(
    manifest: ChipManifest,
    config: ChipConfig,
    tolerance_nm: float = DEFAULT_TOLERANCE_NM,
    progress: bool = False,
) -> gdstk.Library:
    lib = gdstk.Library(name=manifest.chip_id, unit=1e-6, precision=1e-9)
    designs = manifest.designs
    unit_cells: dict[int, tuple[gdstk.Cell, float]] = {}
    for i in tqdm(range(len(designs)), desc="unit cells", unit="cell", disable=not progress):
        design = designs.design(i)
        cell = lib.new_cell(f"D{int(designs.design_id[i])}")
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
        for x, y, did in zip(
            pads.x_um[sel] - ox, pads.y_um[sel] - oy, pads.design_id[sel], strict=True
        ):
            unit, period_nm = unit_cells[int(did)]
            n = cells_per_pad(period_nm, size)
            p = period_nm / NM_PER_UM
            cell.add(
                gdstk.Reference(
                    unit, (x - size / 2, y - size / 2), columns=n, rows=n, spacing=(p, p)
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

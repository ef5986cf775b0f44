"""Chip manifest -> hierarchical GDSII/OASIS with gdstk.

Hierarchy (nothing flattened, so a 136,530-pad chip stays a few tens of MB): one cell per unit-cell
design ``D<design_id>``; each pad is one AREF of its unit cell (``P/period`` cells a side); each
placed array is a cell ``A<k>R<r>`` / ``A<k>C`` of pad AREFs; the top cell places the arrays,
the fiducial crosses (on the silicon layer, so they are etched and visible), array outlines and
labels. Same manifest and tolerance give byte-identical files: GDS gets a fixed timestamp.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal

import gdstk
from tqdm import tqdm

from common.atomic import atomic_output
from layout.chip import ChipConfig, cells_per_pad
from layout.layers import Layer
from layout.manifest import ChipManifest, Role, write_manifest
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
        sel = (
            (pads.array_id == arrays.array_id[a])
            & (pads.replica == arrays.replica[a])
            & (pads.role == arrays.role[a])
        )
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


def write_layout(lib: gdstk.Library, path: Path, fmt: Format = "gds") -> None:
    """Write atomically; ``fmt`` picks GDSII or OASIS (far smaller for wafer-scale chips)."""
    with atomic_output(Path(path)) as tmp:
        if fmt == "gds":
            lib.write_gds(str(tmp), timestamp=FIXED_TIMESTAMP)
        elif fmt == "oas":
            lib.write_oas(str(tmp), compression_level=6)
        else:
            raise ValueError(f"format {fmt!r} must be 'gds' or 'oas'")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_chip(
    manifest: ChipManifest,
    config: ChipConfig,
    layout_path: Path,
    manifest_path: Path,
    fmt: Format = "gds",
    tolerance_nm: float = DEFAULT_TOLERANCE_NM,
    progress: bool = False,
) -> None:
    """Write the layout and its manifest; the manifest records the layout's name and SHA-256.

    Both go through temporary names, and the layout is removed again if the manifest fails, so
    a failure leaves neither file.
    """
    layout_path, manifest_path = Path(layout_path), Path(manifest_path)
    lib = build_gds(manifest, config, tolerance_nm, progress)
    write_layout(lib, layout_path, fmt)
    try:
        attrs = dict(manifest.attrs)
        attrs.update(
            layout_file=layout_path.name,
            layout_format=fmt,
            layout_sha256=file_sha256(layout_path),
            polygon_tolerance_nm=tolerance_nm,
        )
        write_manifest(manifest_path, replace(manifest, attrs=attrs))
    except BaseException:
        layout_path.unlink(missing_ok=True)
        raise

"""Fields of view over an array: which tiles a scan needs and the order it visits them in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acquisition.messages import TileIndex
from layout.manifest import ChipManifest

# Pad edges within this of a field edge count as inside (coordinates are on a 1 nm grid).
_CONTAIN_TOL_UM = 1e-6


@dataclass(frozen=True)
class Tile:
    """One field of view over an array: grid index (row grows with y), centre in chip µm, and the
    pad-table rows of the pads wholly inside the field."""

    row: int
    col: int
    centre_um: tuple[float, float]
    pads: tuple[int, ...]

    @property
    def index(self) -> TileIndex:
        return self.row, self.col


def _groups(count: int, per_group: int) -> list[tuple[int, int]]:
    """Split ``count`` pad columns (or rows) into as few runs of at most ``per_group`` as possible,
    balanced so their sizes differ by at most one: (first, last) of each."""
    n = math.ceil(count / per_group)
    sizes = [count // n + (1 if k < count % n else 0) for k in range(n)]
    starts = np.cumsum([0, *sizes[:-1]])
    return [(int(s), int(s) + size - 1) for s, size in zip(starts, sizes, strict=True)]


def tiles_for_array(
    manifest: ChipManifest, array_name: str, fov_um: tuple[float, float], overlap_um: float
) -> list[Tile]:
    """The fields of view an array needs: one centred tile when its footprint fits, else a grid.

    A grid steps by whole pad pitches, so each pad lies wholly inside at least one tile, with as
    many pads per tile as leave neighbouring fields sharing at least ``overlap_um`` (room for the
    stage's landing error and for registration). Refused when a field cannot hold one pad plus the
    overlap.
    """
    k = manifest.array_index(array_name)
    a = manifest.arrays
    pitch, pad = manifest.pad_pitch_um, manifest.pad_size_um
    rows, cols = int(a.rows[k]), int(a.cols[k])
    ox, oy = float(a.origin_x_um[k]), float(a.origin_y_um[k])
    spans = []
    for axis, count, fov in (("x", cols, fov_um[0]), ("y", rows, fov_um[1])):
        footprint = (count - 1) * pitch + pad
        if footprint <= fov + _CONTAIN_TOL_UM:
            spans.append([(0, count - 1)])
            continue
        per_tile = math.floor((fov - overlap_um) / pitch + 1e-9)
        if per_tile < 1 or (per_tile - 1) * pitch + pad > fov:
            raise ValueError(
                f"a {fov:g} µm field ({axis}) with {overlap_um:g} µm overlap cannot hold one "
                f"{pitch:g} µm pad pitch; reduce [scan] overlap_um or widen [optics]"
            )
        spans.append(_groups(count, per_tile))
    pads = manifest.pads
    mine = manifest.pads_of(k)
    half_w, half_h, half_pad = fov_um[0] / 2, fov_um[1] / 2, pad / 2
    tiles = []
    for r, (r0, r1) in enumerate(spans[1]):
        cy = oy + (r0 + r1) / 2 * pitch + half_pad
        for c, (c0, c1) in enumerate(spans[0]):
            cx = ox + (c0 + c1) / 2 * pitch + half_pad
            inside = (np.abs(pads.x_um[mine] - cx) + half_pad <= half_w + _CONTAIN_TOL_UM) & (
                np.abs(pads.y_um[mine] - cy) + half_pad <= half_h + _CONTAIN_TOL_UM
            )
            tiles.append(Tile(r, c, (cx, cy), tuple(int(i) for i in mine[inside])))
    return tiles


def serpentine(tiles: Sequence[Tile]) -> list[Tile]:
    """Row by row, every other row right to left: the stage never flies back across the array."""
    return sorted(tiles, key=lambda t: (t.row, t.col if t.row % 2 == 0 else -t.col))

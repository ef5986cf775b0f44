"""Target maps: what each pad of an inverse-designed chip is asked to be.

Two kinds, one shape (a grid of rows into a list of targets, -1 where no pad goes):

* **colour**: an image (PNG). Each pixel becomes a pad; every distinct colour is one target
  (id ``#rrggbb``), so identical pixels are designed once. Fully transparent pixels (alpha 0)
  get no pad. Image row 0 is the top, chip row 0 the bottom: the grid is the image flipped so
  the chip reads like the picture.
* **spectrum**: a targets file (contract 7) placed by a CSV table ``target_id,row,col`` (row 0
  at the bottom), or without one, row-major from the bottom-left in ``cols`` columns. Targets
  with identical spectra and weights are designed once (``unique``).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dataset.targets_file import Targets, read_targets

MapKind = Literal["colour", "spectrum"]
MAX_PADS = 1_000_000  # pixels of a map; a wafer scales its image up to the disc (layout.wafer)


@dataclass(frozen=True, eq=False)
class TargetMap:
    grid: NDArray[np.int32]  # (R, C) rows of target_ids; -1: no pad
    target_ids: tuple[str, ...]
    kind: MapKind
    unique: NDArray[np.int64]  # (T,) each target's representative: designed once for all
    source: str
    source_sha256: str
    srgb: NDArray[np.uint8] | None = None  # (T, 3) colour maps
    targets: Targets | None = None  # spectrum maps, rows aligned with target_ids

    def __post_init__(self) -> None:
        t = len(self.target_ids)
        if self.grid.ndim != 2 or np.any(self.grid < -1) or np.any(self.grid >= t):
            raise ValueError(f"the map's grid must be 2-D rows of 0..{t - 1} (or -1)")
        if self.unique.shape != (t,):
            raise ValueError(f"unique must have one row per target ({t})")

    @property
    def pads(self) -> int:
        return int(np.count_nonzero(self.grid >= 0))

    @property
    def designs_needed(self) -> NDArray[np.int64]:
        """Representatives of the targets the grid uses: what is actually designed."""
        used = np.unique(self.grid[self.grid >= 0])
        return np.unique(self.unique[used])


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_colour_map(path: Path) -> TargetMap:
    """A PNG's pixels as colour targets (module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"target map {path} does not exist")
    try:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"))
    except UnidentifiedImageError:
        raise ValueError(f"target map {path} is not an image Pillow can read") from None
    h, w = rgba.shape[:2]
    if h * w > MAX_PADS:
        raise ValueError(
            f"target map {path} is {w}x{h} = {h * w} pixels; a map holds at most {MAX_PADS} "
            "(a wafer scales its image up to the disc: give a smaller image)"
        )
    rgba = rgba[::-1]  # chip row 0 is the image's bottom row
    opaque = rgba[..., 3] > 0
    if not opaque.any():
        raise ValueError(f"target map {path} is fully transparent: no pad to place")
    colours, index = np.unique(rgba[..., :3][opaque], axis=0, return_inverse=True)
    grid = np.full((h, w), -1, np.int32)
    grid[opaque] = index.ravel()
    ids = tuple("#{:02x}{:02x}{:02x}".format(*(int(v) for v in c)) for c in colours)
    return TargetMap(
        grid=grid,
        target_ids=ids,
        kind="colour",
        unique=np.arange(len(ids), dtype=np.int64),
        source=str(path),
        source_sha256=_sha256(path),
        srgb=colours.astype(np.uint8),
    )


def read_spectrum_map(
    targets_path: Path, placement: Path | None = None, cols: int | None = None
) -> TargetMap:
    """Targets placed by a ``target_id,row,col`` CSV, or row-major in ``cols`` columns (default:
    the smallest square that holds them)."""
    targets = read_targets(targets_path)
    n = len(targets)
    position = {name: i for i, name in enumerate(targets.target_id)}
    if placement is None:
        width = cols or int(np.ceil(np.sqrt(n)))
        if width < 1:
            raise ValueError(f"--cols {cols} must be >= 1")
        height = -(-n // width)
        grid = np.full((height, width), -1, np.int32)
        grid.ravel()[:n] = np.arange(n, dtype=np.int32)
        digest = _sha256(targets_path)
    else:
        cells = _placement_rows(placement, position)
        rows = max(r for r, _, _ in cells) + 1
        width = max(c for _, c, _ in cells) + 1
        if rows * width > MAX_PADS:
            raise ValueError(
                f"placement {placement} spans {rows}x{width} cells; at most {MAX_PADS}"
            )
        grid = np.full((rows, width), -1, np.int32)
        for r, c, t in cells:
            if grid[r, c] >= 0:
                raise ValueError(f"placement {placement}: row {r}, col {c} is given twice")
            grid[r, c] = t
        digest = hashlib.sha256((_sha256(targets_path) + _sha256(placement)).encode()).hexdigest()
    return TargetMap(
        grid=grid,
        target_ids=tuple(targets.target_id),
        kind="spectrum",
        unique=_identical_rows(targets),
        source=str(targets_path) if placement is None else f"{targets_path} + {placement}",
        source_sha256=digest,
        targets=targets,
    )


def _placement_rows(path: Path, position: dict[str, int]) -> list[tuple[int, int, int]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"placement table {path} does not exist")
    cells: list[tuple[int, int, int]] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"target_id", "row", "col"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(
                f"placement table {path} needs the columns target_id,row,col; it has "
                f"{','.join(reader.fieldnames or [])}"
            )
        for line, rec in enumerate(reader, start=2):
            name = rec["target_id"]
            if name not in position:
                raise ValueError(f"{path}:{line}: target_id {name!r} is not in the targets file")
            try:
                r, c = int(rec["row"]), int(rec["col"])
            except ValueError:
                raise ValueError(
                    f"{path}:{line}: row {rec['row']!r} and col {rec['col']!r} must be integers"
                ) from None
            if r < 0 or c < 0:
                raise ValueError(f"{path}:{line}: row {r}, col {c} must be >= 0")
            cells.append((r, c, position[name]))
    if not cells:
        raise ValueError(f"placement table {path} places no target")
    return cells


def _identical_rows(targets: Targets) -> NDArray[np.int64]:
    """Each target's first target of identical spectrum and weight."""
    both = np.concatenate(
        [targets.spectra.reshape(len(targets), -1), targets.weight.reshape(len(targets), -1)],
        axis=1,
    )
    _, first, inverse = np.unique(both, axis=0, return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


def read_map(path: Path, placement: Path | None = None, cols: int | None = None) -> TargetMap:
    """A PNG is a colour map; anything else is read as a targets file."""
    if Path(path).suffix.lower() == ".png":
        if placement is not None:
            raise ValueError("--placement places spectral targets; an image places itself")
        return read_colour_map(path)
    return read_spectrum_map(path, placement, cols)


def describe(m: TargetMap) -> dict[str, Any]:
    rows, cols = m.grid.shape
    return {
        "kind": m.kind,
        "source": m.source,
        "source_sha256": m.source_sha256,
        "rows": rows,
        "cols": cols,
        "pads": m.pads,
        "targets": len(m.target_ids),
        "designs": int(m.designs_needed.size),
    }

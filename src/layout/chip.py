"""Chip placement: which design goes on which pad, where, as a manifest (no GDS involved).

Array ``k`` takes designs ``k*R*C .. (k+1)*R*C - 1`` of the library. Replica 0 holds them in
library order, every further replica in its own seeded permutation, so a fabrication gradient
across an array never hits the same design the same way twice. Each array also gets one
companion array (10x10 by default) of designs drawn at random from it, for SEM checks.
Blocks are laid out one source array per chip row: replicas left to right, then the companion.
Four fiducial crosses sit diagonally outside the corners of every placed array.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from common.values import SEED, Bounds
from layout.design import DesignLibrary
from layout.manifest import ArrayTable, ChipManifest, PadTable, Role
from layout.material import DEFAULT_MATERIAL, check_name
from layout.rules import DesignRules

# Every number of a chip, checked where it enters (the CLI's options use the same bounds).
CHIP_BOUNDS = {
    "thickness_nm": Bounds(0.0, 10_000.0, unit="nm", lo_open=True),
    "arrays": Bounds(1, 10_000, integer=True),
    "rows": Bounds(1, 10_000, integer=True),
    "cols": Bounds(1, 10_000, integer=True),
    "replicas": Bounds(1, 100, integer=True),
    "pad_size_um": Bounds(0.0, 1000.0, unit="µm", lo_open=True),
    "pad_gap_um": Bounds(0.0, 1000.0, unit="µm"),
    "companion_size": Bounds(0, 1000, integer=True),
    "array_spacing_um": Bounds(0.0, 100_000.0, unit="µm"),
    "fiducial_offset_um": Bounds(0.0, 10_000.0, unit="µm"),
    "fiducial_arm_um": Bounds(0.0, 10_000.0, unit="µm", lo_open=True),
    "fiducial_width_um": Bounds(0.0, 10_000.0, unit="µm", lo_open=True),
    "seed": SEED,
}


@dataclass(frozen=True)
class ChipConfig:
    """Chip geometry in µm (pads, spacing) and nm (film thickness), and the film material."""

    thickness_nm: float
    material: str = DEFAULT_MATERIAL
    arrays: int = 1
    rows: int = 10
    cols: int = 10
    replicas: int = 2
    pad_size_um: float = 6.0
    pad_gap_um: float = 0.0
    companion_size: int = 10
    array_spacing_um: float = 60.0
    fiducial_offset_um: float = 15.0
    fiducial_arm_um: float = 10.0
    fiducial_width_um: float = 2.0
    seed: int = 0
    chip_id: str = "chip"

    def __post_init__(self) -> None:
        for name, bounds in CHIP_BOUNDS.items():
            bounds.check(name, getattr(self, name))
        check_name(self.material, "material")
        if self.fiducial_width_um <= 0 or self.fiducial_arm_um <= self.fiducial_width_um:
            raise ValueError(
                f"fiducial arm {self.fiducial_arm_um} µm must exceed its width {self.fiducial_width_um} µm > 0"
            )
        if self.fiducial_offset_um - self.fiducial_width_um / 2 < 1.0:
            raise ValueError(
                f"fiducial_offset_um={self.fiducial_offset_um} puts the crosses within 1 µm of the "
                f"pads; use >= {self.fiducial_width_um / 2 + 1:g}"
            )
        need = 2 * (self.fiducial_offset_um + self.fiducial_arm_um) + 1
        if self.array_spacing_um < need:
            raise ValueError(
                f"array_spacing_um={self.array_spacing_um} leaves no room for the fiducials; use >= {need:g}"
            )

    @property
    def pad_pitch_um(self) -> float:
        return self.pad_size_um + self.pad_gap_um

    @property
    def pads_per_array(self) -> int:
        return self.rows * self.cols


def cells_per_pad(period_nm: float, pad_size_um: float) -> int:
    """Unit cells along a pad side; the pad must hold a whole number of periods."""
    n = pad_size_um * 1000.0 / period_nm
    if abs(n - round(n)) > 1e-6:
        raise ValueError(
            f"pad size {pad_size_um:g} µm is not a whole number of {period_nm:g} nm periods "
            f"({n:.3f}); choose a pad size that is a multiple of every period (6 µm fits 300-600 nm)"
        )
    return round(n)


def plan_chip(
    library: DesignLibrary, config: ChipConfig, rules: DesignRules | None = None
) -> ChipManifest:
    """Assign designs to pads and place arrays; raises before any output if anything cannot fit."""
    cfg = config
    need = cfg.arrays * cfg.pads_per_array
    if len(library) < need:
        raise ValueError(
            f"{cfg.arrays} arrays of {cfg.rows}x{cfg.cols} need {need} designs; the library has "
            f"{len(library)}"
        )
    if cfg.companion_size**2 > cfg.pads_per_array:
        raise ValueError(
            f"companion_size={cfg.companion_size} asks for {cfg.companion_size**2} pads from an array "
            f"of {cfg.pads_per_array}; use <= {int(cfg.pads_per_array**0.5)} or 0"
        )
    for period in np.unique(library.period_nm[:need]):
        cells_per_pad(float(period), cfg.pad_size_um)
    rng = np.random.default_rng(cfg.seed)
    placement = _Placement(cfg)
    for k in range(cfg.arrays):
        ids = library.design_id[k * cfg.pads_per_array : (k + 1) * cfg.pads_per_array]
        oy = k * placement.block_y(cfg.rows)
        for rep in range(cfg.replicas):
            order = ids if rep == 0 else ids[rng.permutation(ids.size)]
            placement.place(
                f"A{k}R{rep}",
                k,
                rep,
                Role.DATASET,
                (rep * placement.block_x(cfg.cols), oy),
                order.reshape(cfg.rows, cfg.cols),
            )
        if cfg.companion_size:
            n = cfg.companion_size
            chosen = ids[rng.choice(ids.size, n * n, replace=False)]
            placement.place(
                f"A{k}C",
                k,
                -1,
                Role.COMPANION,
                (cfg.replicas * placement.block_x(cfg.cols), oy),
                chosen.reshape(n, n),
            )
    used = np.unique(library.design_id[:need])
    return placement.manifest(library.take(library.index_of(used)), rules)


def plan_map_chip(
    design_grid: NDArray[np.int64],
    target_grid: NDArray[np.int32],
    target_ids: tuple[str, ...],
    library: DesignLibrary,
    config: ChipConfig,
    rules: DesignRules | None = None,
) -> ChipManifest:
    """A chip that prints a map: pad (row, col) holds ``design_grid[row, col]`` (a design id of
    ``library``; -1: no pad there) made for target ``target_grid[row, col]`` (a row of
    ``target_ids``). Every replica is the whole map again, side by side (``A0R0``, ``A0R1``...):
    an image must stay an image, and each design still has a replica in another array for
    curation. Companion arrays and ``config.arrays``/``rows``/``cols`` do not apply."""
    if design_grid.ndim != 2 or design_grid.shape != target_grid.shape:
        raise ValueError(
            f"design grid {design_grid.shape} and target grid {target_grid.shape} must be one "
            "2-D shape"
        )
    placed = design_grid >= 0
    if not placed.any():
        raise ValueError("the map places no pad: every cell is empty")
    if np.any(target_grid[placed] < 0) or np.any(target_grid >= len(target_ids)):
        raise ValueError(f"target grid names targets outside 0..{len(target_ids) - 1}")
    used = np.unique(design_grid[placed])
    rows_of = library.index_of(used)  # refuses ids the library lacks
    for period in np.unique(library.period_nm[rows_of]):
        cells_per_pad(float(period), config.pad_size_um)
    placement = _Placement(config)
    cols = design_grid.shape[1]
    for rep in range(config.replicas):
        placement.place(
            f"A0R{rep}",
            0,
            rep,
            Role.DATASET,
            (rep * placement.block_x(cols), 0.0),
            design_grid,
            target_grid,
        )
    return placement.manifest(library.take(rows_of), rules, target_ids)


class _Placement:
    """Arrays and pads as they are placed: one array of pads (a grid of design ids) and its four
    fiducial crosses at a time, then the manifest."""

    def __init__(self, config: ChipConfig) -> None:
        self.cfg = config
        self.arrays: dict[str, list[Any]] = {
            k: [] for k in ("name", "array_id", "replica", "role", "ox", "oy", "rows", "cols")
        }
        self.pads: list[PadTable] = []
        self.targets: list[NDArray[np.int32]] = []

    def block_x(self, cols: int) -> float:
        return cols * self.cfg.pad_pitch_um - self.cfg.pad_gap_um + self.cfg.array_spacing_um

    def block_y(self, rows: int) -> float:
        return rows * self.cfg.pad_pitch_um - self.cfg.pad_gap_um + self.cfg.array_spacing_um

    def place(
        self,
        name: str,
        array_id: int,
        replica: int,
        role: Role,
        origin_um: tuple[float, float],
        ids: NDArray[np.int64],
        target: NDArray[np.int32] | None = None,
    ) -> None:
        cfg, (ox, oy) = self.cfg, origin_um
        rows, cols = ids.shape
        for key, value in zip(
            self.arrays, (name, array_id, replica, role, ox, oy, rows, cols), strict=True
        ):
            self.arrays[key].append(value)
        r, c = np.divmod(np.arange(rows * cols), cols)
        keep = ids.ravel() >= 0
        r, c = r[keep], c[keep]
        n, pitch = r.size, cfg.pad_pitch_um
        self.pads.append(
            PadTable(
                np.full(n, array_id, np.int32),
                np.full(n, replica, np.int32),
                np.full(n, role, np.int8),
                r.astype(np.int32),
                c.astype(np.int32),
                ox + c * pitch + cfg.pad_size_um / 2,
                oy + r * pitch + cfg.pad_size_um / 2,
                ids.ravel()[keep].astype(np.int64),
            )
        )
        w, h = cols * pitch - cfg.pad_gap_um, rows * pitch - cfg.pad_gap_um
        off = cfg.fiducial_offset_um
        fx = np.array([ox - off, ox + w + off, ox - off, ox + w + off])
        fy = np.array([oy - off, oy - off, oy + h + off, oy + h + off])
        m1 = np.full(4, -1, np.int32)
        self.pads.append(
            PadTable(
                np.full(4, array_id, np.int32),
                np.full(4, replica, np.int32),
                np.full(4, Role.FIDUCIAL, np.int8),
                m1,
                m1,
                fx,
                fy,
                np.full(4, -1, np.int64),
            )
        )
        pad_target = np.full(n, -1, np.int32) if target is None else target.ravel()[keep]
        self.targets.extend([pad_target.astype(np.int32), m1])

    def manifest(
        self,
        designs: DesignLibrary,
        rules: DesignRules | None,
        target_ids: tuple[str, ...] | None = None,
    ) -> ChipManifest:
        cfg, a = self.cfg, self.arrays
        table = ArrayTable(
            a["name"],
            np.array(a["array_id"], np.int32),
            np.array(a["replica"], np.int32),
            np.array(a["role"], np.int8),
            np.array(a["ox"], float),
            np.array(a["oy"], float),
            np.array(a["rows"], np.int32),
            np.array(a["cols"], np.int32),
        )
        attrs = {"config": asdict(cfg), "rules": (rules or DesignRules()).to_dict()}
        return ChipManifest(
            cfg.chip_id,
            cfg.thickness_nm,
            cfg.pad_size_um,
            cfg.pad_pitch_um,
            table,
            PadTable.concatenate(self.pads),
            designs,
            attrs,
            material=cfg.material,
            pad_target=None if target_ids is None else np.concatenate(self.targets),
            target_ids=target_ids or (),
        )

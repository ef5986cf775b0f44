"""A scan as a plan: a generator of small messages that one runner executes (bluesky's idea).

The plan never touches a device. It decides what to do and in what order; the runner alone talks
to hardware, and a dry run drives the same generator with a stub. That keeps limit checks, time
estimates and message-order tests free of devices.

Semantics the runner implements:

* ``Move``: stage to (x, y) stage µm; returns when the stage is idle.
* ``SetWavelength``: retune, then wait ``settle_s`` before the next acquisition (settling is part
  of the message, so the plan cannot forget it).
* ``SetMode``: the filter's bandwidth mode; BLACK blocks the beam for darks.
* ``AutoExpose``: the runner finds exposures for the current band on bare glass, for the sample
  camera and for the reference camera (which watches the same filtered lamp), and sends them back
  (``generator.send(Exposures(sample_s, reference_s))``); the plan quantises both to the exposure
  ladder and uses them for every tile's band (the same light through glass, so pads are never
  over-exposed).
* ``SetExposure``: both cameras' exposures for the next acquisitions.
* ``AcquireDark``: the filter is in BLACK; average ``frames`` frames of one camera at one
  exposure. Every tile takes its own darks at every exposure its bands use (dark current and
  offset drift with sensor temperature over a long scan), and so does the flat.
* ``Acquire``: trigger both cameras together, average ``frames`` sample frames, record the
  reference reading over ``reference_frames``; ``Acquire`` carries every identifier of the band
  (section, array, tile, polarisation, wavelength), so a resumed runner skips a band already on
  disk by key, and answers a repeated ``AutoExpose`` from the exposures it recorded.
* ``Checkpoint``: everything before it is complete and durable; a resumed scan restarts after
  the last one.

Order: flat (bare glass, once per scan or per array) with an auto-exposure per polarisation and
band, then its darks at every distinct exposure; then for each tile of each array (serpentine, so
the stage never flies back across the array): move, darks at the same exposures, and for each
polarisation: rotate, then for each band: retune and settle, set the flat's exposures, acquire,
checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from acquisition.scan_config import ScanConfig
from instruments.protocols import BandwidthMode
from layout.affine import Affine2D
from layout.manifest import ChipManifest

Section = Literal["signal", "flat"]
CameraRole = Literal["sample", "reference"]
TileIndex = tuple[int, int]
Key = tuple[str, float]  # (polarization, wavelength_nm)
# Pad edges within this of a field edge count as inside (coordinates are on a 1 nm grid).
_CONTAIN_TOL_UM = 1e-6


@dataclass(frozen=True)
class Move:
    x_um: float
    y_um: float


@dataclass(frozen=True)
class SetWavelength:
    wavelength_nm: float
    settle_s: float


@dataclass(frozen=True)
class SetMode:
    mode: BandwidthMode


@dataclass(frozen=True)
class Rotate:
    angle_deg: float


@dataclass(frozen=True)
class AutoExpose:
    """Find exposures on bare glass for one band of the flat of ``array`` (None: scan-wide)."""

    array: str | None
    polarization: str
    wavelength_nm: float


@dataclass(frozen=True)
class Exposures:
    """The answer to ``AutoExpose``: both cameras' exposures for one band."""

    sample_s: float
    reference_s: float


@dataclass(frozen=True)
class SetExposure:
    exposure_s: float
    reference_exposure_s: float


@dataclass(frozen=True)
class Acquire:
    """One band. ``array``/``tile`` are None for the scan-wide flat."""

    section: Section
    array: str | None
    tile: TileIndex | None
    polarization: str
    wavelength_nm: float
    frames: int
    reference_frames: int


@dataclass(frozen=True)
class AcquireDark:
    """One camera's dark (filter in BLACK) at one exposure, in the flat (``tile`` None) or a
    tile's file."""

    array: str | None
    tile: TileIndex | None
    camera: CameraRole
    exposure_s: float
    frames: int


@dataclass(frozen=True)
class Checkpoint:
    label: str


@dataclass(frozen=True)
class OpenFlat:
    """Start of the flat's file, once every band's exposures are known (its darks are taken
    at them): bare glass at ``centre_chip_um``; ``array`` None for a scan-wide flat."""

    array: str | None
    centre_chip_um: tuple[float, float]
    centre_stage_um: tuple[float, float]
    exposures: tuple[tuple[str, float, Exposures], ...]  # (polarization, wavelength_nm, ...)


@dataclass(frozen=True)
class CloseFlat:
    array: str | None


@dataclass(frozen=True)
class OpenTile:
    """Start of one tile's hypercube: where it is, and the pads (pad-table rows) wholly inside."""

    array: str
    tile: TileIndex
    centre_chip_um: tuple[float, float]
    centre_stage_um: tuple[float, float]
    pads: tuple[int, ...]


@dataclass(frozen=True)
class CloseTile:
    array: str
    tile: TileIndex


Message = (
    Move
    | SetWavelength
    | SetMode
    | Rotate
    | AutoExpose
    | SetExposure
    | Acquire
    | AcquireDark
    | Checkpoint
    | OpenFlat
    | CloseFlat
    | OpenTile
    | CloseTile
)
Plan = Generator[Message, Exposures | None, None]


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


def _stage(transform: Affine2D, chip_um: tuple[float, float]) -> tuple[float, float]:
    x, y = transform.apply(np.array(chip_um, dtype=np.float64))
    return float(x), float(y)


def scan_plan(
    manifest: ChipManifest,
    config: ScanConfig,
    transform: Affine2D,
    arrays: Sequence[str] | None = None,
    *,
    flat_chip_um: tuple[float, float],
    settle_s: float,
    mode: BandwidthMode = BandwidthMode.NARROW,
) -> Plan:
    """The messages of a scan (module docstring); ``transform`` maps chip µm to stage µm.

    ``arrays`` defaults to every array of the manifest; ``flat_chip_um`` is the bare-glass point
    (``[flat]`` or :func:`acquisition.scan_config.default_flat_point`), ``settle_s`` the wait after
    a retune (``[scan] settle_s`` or the filter's), ``mode`` the resolved bandwidth mode.
    Every ``AutoExpose`` must be answered with ``send(Exposures(...))``.
    """
    names = list(manifest.arrays.name) if arrays is None else list(arrays)
    for name in names:
        manifest.array_index(name)
    s = config.scan
    fov = config.optics.fov_um
    bands = s.wavelengths_nm
    flat_stage = _stage(transform, flat_chip_um)

    def darks(
        array: str | None, tile: TileIndex | None, exposures: dict[Key, Exposures]
    ) -> Generator[Message, Exposures | None, None]:
        yield SetMode(BandwidthMode.BLACK)
        label = f"{array or '*'}/{'flat' if tile is None else f'{tile[0]},{tile[1]}'}"
        per_camera: tuple[tuple[CameraRole, set[float]], ...] = (
            ("sample", {e.sample_s for e in exposures.values()}),
            ("reference", {e.reference_s for e in exposures.values()}),
        )
        for camera, values in per_camera:
            # The reference's dark is one mean over its whole frame: its band's frame count
            # measures it as well as the band itself.
            frames = s.dark_frames if camera == "sample" else s.reference_frames
            for exposure in sorted(values):
                yield AcquireDark(array, tile, camera, exposure, frames)
                yield Checkpoint(f"dark/{label}/{camera}/{exposure:.6g}")
        yield SetMode(mode)

    def flat(array: str | None) -> Generator[Message, Exposures | None, dict[Key, Exposures]]:
        exposures: dict[Key, Exposures] = {}
        yield Move(*flat_stage)
        yield SetMode(mode)
        # Every band's exposures first: the flat's file is laid out with its darks' exposures.
        for pol, angle in s.polarizations.items():
            yield Rotate(angle)
            for wl in bands:
                yield SetWavelength(wl, settle_s)
                answer = yield AutoExpose(array, pol, wl)
                if not isinstance(answer, Exposures):
                    raise ValueError(
                        f"AutoExpose({pol}, {wl:g} nm) was not answered with send(Exposures)"
                    )
                exposures[pol, wl] = Exposures(
                    config.exposure.quantise(answer.sample_s),
                    config.exposure.quantise(answer.reference_s),
                )
        listed = tuple((pol, wl, e) for (pol, wl), e in exposures.items())
        yield OpenFlat(array, flat_chip_um, flat_stage, listed)
        for pol, angle in s.polarizations.items():
            yield Rotate(angle)
            for wl in bands:
                yield SetWavelength(wl, settle_s)
                chosen = exposures[pol, wl]
                yield SetExposure(chosen.sample_s, chosen.reference_s)
                yield Acquire("flat", array, None, pol, wl, s.frames, s.reference_frames)
                yield Checkpoint(f"flat/{array or '*'}/{pol}/{wl:g}")
        yield from darks(array, None, exposures)
        yield CloseFlat(array)
        return exposures

    exposures: dict[Key, Exposures] = {}
    if not s.flat_per_array:
        exposures = yield from flat(None)
    for name in names:
        if s.flat_per_array:
            exposures = yield from flat(name)
        for tile in serpentine(tiles_for_array(manifest, name, fov, s.overlap_um)):
            stage = _stage(transform, tile.centre_um)
            yield OpenTile(name, tile.index, tile.centre_um, stage, tile.pads)
            yield Move(*stage)
            yield from darks(name, tile.index, exposures)
            for pol, angle in s.polarizations.items():
                yield Rotate(angle)
                for wl in bands:
                    yield SetWavelength(wl, settle_s)
                    chosen = exposures[pol, wl]
                    yield SetExposure(chosen.sample_s, chosen.reference_s)
                    yield Acquire("signal", name, tile.index, pol, wl, s.frames, s.reference_frames)
                    yield Checkpoint(f"signal/{name}/{tile.row},{tile.col}/{pol}/{wl:g}")
            yield CloseTile(name, tile.index)

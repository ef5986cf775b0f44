"""A scan as a plan: a generator of messages (:mod:`acquisition.messages`) composed from small
stubs, which one engine executes (bluesky's idea).

Order: the flat (bare glass, once per scan or per array) with an auto-exposure per polarisation
and band, then its bands, then its darks at every distinct exposure; then for each tile of each
array (serpentine, so the stage never flies back across the array): move, darks, and for each
polarisation: rotate, then for each band: retune and settle, set the flat's exposures, acquire,
checkpoint.

Darks (``[scan] darks``), the one policy choice, because they cost 45 % of a scan's device time
when every tile takes its own:

* ``per_tile``: every file takes its own darks at every exposure its bands use.
* ``per_array`` (default): each array's first file (its first tile; its flat when flats are
  per array) takes them and the array's other tiles reuse them (the engine copies them into each
  tile's file, so every hypercube still holds its darks and processing is unchanged); a
  scan-wide flat takes its own.
* ``per_scan``: the first file's darks serve the whole scan, but before each array's first file
  a short ``CheckDark`` of the sample camera at the longest exposure compares the dark's mean with
  the one in use; when it moved by more than ``dark_drift_fraction`` that file takes fresh darks
  and becomes the source for the files after it. The reference camera's darks (one mean each)
  follow the sample camera's verdict.

A file can reuse darks only from a file laid out at the same exposures (a per-array flat gives
each array its own); otherwise it takes its own.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from acquisition.messages import (
    Acquire,
    AcquireDark,
    Answer,
    AutoExpose,
    CameraRole,
    CheckDark,
    Checkpoint,
    CloseFlat,
    CloseTile,
    DarkDrift,
    Exposures,
    FileGrid,
    FileKey,
    Message,
    Move,
    OpenFlat,
    OpenTile,
    Plan,
    Rotate,
    Section,
    SetExposure,
    SetMode,
    SetWavelength,
)
from acquisition.scan_config import BandsConfig, ScanConfig
from acquisition.tiling import serpentine, tiles_for_array
from instruments.protocols import BandwidthMode
from layout.affine import Affine2D
from layout.manifest import ChipManifest

Key = tuple[str, float]  # (polarization, wavelength_nm)
Stub = Generator[Message, Answer, None]


def _stage(transform: Affine2D, chip_um: tuple[float, float]) -> tuple[float, float]:
    x, y = transform.apply(np.array(chip_um, dtype=np.float64))
    return float(x), float(y)


def file_grid(s: BandsConfig, exposures: dict[Key, Exposures]) -> FileGrid:
    """The grid of every file laid out at these exposures."""
    return FileGrid(
        tuple(s.polarizations),
        tuple(sorted(s.wavelengths_nm)),
        tuple(sorted({e.sample_s for e in exposures.values()})),
        tuple(sorted({e.reference_s for e in exposures.values()})),
    )


def take_darks(s: BandsConfig, where: FileKey, grid: FileGrid, mode: BandwidthMode) -> Stub:
    """Both cameras' darks at every exposure of the file, in BLACK, then back to ``mode``."""
    array, tile = where
    yield SetMode(BandwidthMode.BLACK)
    label = f"{array or '*'}/{'flat' if tile is None else f'{tile[0]},{tile[1]}'}"
    per_camera: tuple[tuple[CameraRole, tuple[float, ...]], ...] = (
        ("sample", grid.dark_exposures_s),
        ("reference", grid.reference_dark_exposures_s),
    )
    for camera, values in per_camera:
        # The reference's dark is one mean over its whole frame: its band's frame count
        # measures it as well as the band itself.
        frames = s.dark_frames if camera == "sample" else s.reference_frames
        for exposure in values:
            yield AcquireDark(array, tile, camera, exposure, frames)
            yield Checkpoint(f"dark/{label}/{camera}/{exposure:.6g}")
    yield SetMode(mode)


def bands(
    s: BandsConfig,
    where: FileKey,
    exposures: dict[Key, Exposures],
    settle_s: float,
) -> Stub:
    """Every band of one file: rotate per polarisation, retune and settle, expose, acquire."""
    array, tile = where
    section: Section = "flat" if tile is None else "signal"
    label = f"{array or '*'}/{'' if tile is None else f'{tile[0]},{tile[1]}/'}"
    for pol, angle in s.polarizations.items():
        yield Rotate(angle)
        for wl in s.wavelengths_nm:
            yield SetWavelength(wl, settle_s)
            chosen = exposures[pol, wl]
            yield SetExposure(chosen.sample_s, chosen.reference_s)
            yield Acquire(section, array, tile, pol, wl, s.frames, s.reference_frames)
            yield Checkpoint(f"{section}/{label}{pol}/{wl:g}")


def glass_exposures(
    config: ScanConfig, array: str | None, settle_s: float
) -> Generator[Message, Answer, dict[Key, Exposures]]:
    """Auto-expose every band on glass (the stage is on the flat point), on the ladder."""
    s = config.scan
    exposures: dict[Key, Exposures] = {}
    for pol, angle in s.polarizations.items():
        yield Rotate(angle)
        for wl in s.wavelengths_nm:
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
    return exposures


class DarkSources:
    """Which file's darks the next file reuses, under the ``[scan] darks`` policy."""

    def __init__(self, s: BandsConfig, mode: BandwidthMode) -> None:
        self.s = s
        self.mode = mode
        self.source: tuple[FileKey, FileGrid] | None = None
        self._array: str | None = None  # the array of the last file

    def choose(self, where: FileKey, grid: FileGrid) -> Generator[Message, Answer, FileKey | None]:
        """The file to copy darks from, or None: this file takes its own (and becomes the
        source). A scan-wide flat takes its own; ``per_array`` has each array's first file take
        them; ``per_scan`` checks for drift at each array's first file."""
        policy = self.s.darks
        new_array = where[0] != self._array
        self._array = where[0]
        reuse = policy != "per_tile" and self.source is not None and self.source[1] == grid
        if reuse and policy == "per_array" and new_array:
            reuse = False
        if reuse and policy == "per_scan" and new_array:
            reuse = not (yield from self._drifted(where, grid))
        if not reuse or self.source is None:
            self.source = (where, grid)  # this file takes its own darks and serves the next
            return None
        return self.source[0]

    def _drifted(self, where: FileKey, grid: FileGrid) -> Generator[Message, Answer, bool]:
        if self.source is None:
            raise ValueError("a dark check needs a file with darks to compare with")
        yield SetMode(BandwidthMode.BLACK)
        answer = yield CheckDark(
            *where,
            self.source[0],
            "sample",
            max(grid.dark_exposures_s),
            self.s.dark_check_frames,
            self.s.dark_drift_fraction,
        )
        yield SetMode(self.mode)
        if not isinstance(answer, DarkDrift):
            raise ValueError(f"{where}: CheckDark was not answered with send(DarkDrift)")
        return answer.drifted


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
    Every ``AutoExpose`` must be answered with ``send(Exposures(...))``, every ``CheckDark``
    with ``send(DarkDrift(...))``.
    """
    names = list(manifest.arrays.name) if arrays is None else list(arrays)
    for name in names:
        manifest.array_index(name)
    s = config.scan
    flat_stage = _stage(transform, flat_chip_um)
    sources = DarkSources(s, mode)

    def flat(array: str | None) -> Generator[Message, Answer, dict[Key, Exposures]]:
        yield Move(*flat_stage)
        yield SetMode(mode)
        # Every band's exposures first: the flat's file is laid out with its darks' exposures.
        exposures = yield from glass_exposures(config, array, settle_s)
        grid = file_grid(s, exposures)
        where: FileKey = (array, None)
        darks_from = yield from sources.choose(where, grid)
        listed = tuple((pol, wl, e) for (pol, wl), e in exposures.items())
        yield OpenFlat(array, flat_chip_um, flat_stage, listed, grid, darks_from)
        yield from bands(s, where, exposures, settle_s)
        if darks_from is None:
            yield from take_darks(s, where, grid, mode)
        yield CloseFlat(array)
        return exposures

    exposures: dict[Key, Exposures] = {}
    if not s.flat_per_array:
        exposures = yield from flat(None)
    for name in names:
        if s.flat_per_array:
            exposures = yield from flat(name)
        grid = file_grid(s, exposures)
        tiles = serpentine(tiles_for_array(manifest, name, config.optics.fov_um, s.overlap_um))
        for tile in tiles:
            stage = _stage(transform, tile.centre_um)
            where = (name, tile.index)
            checks = s.darks == "per_scan"
            if checks:  # a drift check is taken where the tile's darks would be
                yield Move(*stage)
            darks_from = yield from sources.choose(where, grid)
            yield OpenTile(name, tile.index, tile.centre_um, stage, tile.pads, grid, darks_from)
            if not checks:
                yield Move(*stage)
            if darks_from is None:
                yield from take_darks(s, where, grid, mode)
            yield from bands(s, where, exposures, settle_s)
            yield CloseTile(name, tile.index)

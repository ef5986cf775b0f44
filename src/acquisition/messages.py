"""The messages a scan plan yields and the answers the engine sends back (bluesky's vocabulary).

A plan never touches a device: it decides what to do and in what order, as a generator of these
frozen messages. The engine (:mod:`acquisition.engine`) alone talks to hardware; the dry run
(:mod:`acquisition.estimate`) drives the same generator with a stub. Semantics the engine
implements:

* ``Move``, ``Rotate``, ``SetMode``, ``SetWavelength`` (with the wait after a retune, so a plan
  cannot forget it), ``SetExposure``: the wanted device state for what is measured next.
* ``AutoExpose``: find both cameras' exposures for the current band on bare glass; answered with
  ``send(Exposures(...))``.
* ``AcquireDark``: the filter is in BLACK; average ``frames`` frames of one camera at one
  exposure into the open file. ``CheckDark``: the same grab, not stored, compared with the dark
  the file ``source`` holds; answered with ``send(DarkDrift(...))``.
* ``Acquire``: both cameras triggered together; carries every identifier of the band, so a
  resumed engine skips a band already on disk by key.
* ``OpenFlat``/``OpenTile`` start a file and carry its whole grid (polarisations, wavelengths,
  the dark exposures), so nothing downstream rebuilds the grid from the config; ``darks_from``
  names the file whose darks this one reuses (the dark policy), None when it takes its own.
* ``Checkpoint``: everything before it is complete and durable.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

from instruments.protocols import BandwidthMode

Section = Literal["signal", "flat"]
CameraRole = Literal["sample", "reference"]
TileIndex = tuple[int, int]
FileKey = tuple[str | None, TileIndex | None]
"""A scan file: (array, tile); tile None is the flat of the array (array None: the scan's)."""


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
class CheckDark:
    """Before file ``(array, tile)`` opens: is the dark still the one file ``source`` holds?"""

    array: str | None
    tile: TileIndex | None
    source: FileKey
    camera: CameraRole
    exposure_s: float
    frames: int
    max_fraction: float


@dataclass(frozen=True)
class DarkDrift:
    """The answer to ``CheckDark``: |now - then| / then of the dark's mean, and the verdict."""

    fraction: float
    drifted: bool


@dataclass(frozen=True)
class Checkpoint:
    label: str


@dataclass(frozen=True)
class FileGrid:
    """What a file is laid out for: its band grid (wavelengths ascending) and the exposures its
    darks are taken at."""

    polarizations: tuple[str, ...]
    wavelengths_nm: tuple[float, ...]
    dark_exposures_s: tuple[float, ...]
    reference_dark_exposures_s: tuple[float, ...]


@dataclass(frozen=True)
class OpenFlat:
    """Start of the flat's file, once every band's exposures are known (its darks are taken
    at them): bare glass at ``centre_chip_um``; ``array`` None for a scan-wide flat."""

    array: str | None
    centre_chip_um: tuple[float, float]
    centre_stage_um: tuple[float, float]
    exposures: tuple[tuple[str, float, Exposures], ...]  # (polarization, wavelength_nm, ...)
    grid: FileGrid
    darks_from: FileKey | None = None


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
    grid: FileGrid
    darks_from: FileKey | None = None


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
    | CheckDark
    | Checkpoint
    | OpenFlat
    | CloseFlat
    | OpenTile
    | CloseTile
)
Answer = Exposures | DarkDrift | None
Plan = Generator[Message, Answer, None]

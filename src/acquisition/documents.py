"""What the engine publishes to its subscribers: one document per thing measured or happened.

The engine measures; subscribers keep (the hypercube store writes files, the run-record
subscriber appends run.jsonl, the runner's progress bar and quick-looks watch). Each document
names its run-record event (``kind``) and the fields that event carries (``fields()``), so the
record is written in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from acquisition.autoexpose import ExposureResult
from acquisition.messages import Acquire, AcquireDark, AutoExpose, CheckDark, FileKey


@dataclass(frozen=True)
class BandMeasured:
    kind: ClassVar[str] = "band"
    message: Acquire
    image: NDArray[np.floating[Any]]
    reference_dn: float
    exposure_s: float  # the requested (ladder) exposures: they name the matching darks exactly
    reference_exposure_s: float
    frames: int
    timestamp_s: float
    flags: int
    wall_s: float

    def fields(self) -> dict[str, Any]:
        m = self.message
        return {
            "section": m.section,
            "array": m.array,
            "tile": m.tile,
            "polarization": m.polarization,
            "wavelength_nm": m.wavelength_nm,
            "exposure_s": self.exposure_s,
            "reference_exposure_s": self.reference_exposure_s,
            "reference_dn": self.reference_dn,
            "flags": self.flags,
            "wall_s": self.wall_s,
        }


@dataclass(frozen=True)
class BandSkipped:
    """A band already on disk (a resumed scan)."""

    kind: ClassVar[str] = ""  # not recorded
    message: Acquire

    def fields(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class DarkMeasured:
    kind: ClassVar[str] = "dark"
    message: AcquireDark
    image: NDArray[np.floating[Any]]
    frames: int
    timestamp_s: float

    def fields(self) -> dict[str, Any]:
        m = self.message
        return {
            "array": m.array,
            "tile": m.tile,
            "camera": m.camera,
            "exposure_s": m.exposure_s,
            "mean_dn": float(self.image.mean()),
        }


@dataclass(frozen=True)
class DarkChecked:
    kind: ClassVar[str] = "dark_check"
    message: CheckDark
    mean_dn: float
    source_mean_dn: float
    fraction: float
    drifted: bool

    def fields(self) -> dict[str, Any]:
        m = self.message
        return {
            "array": m.array,
            "tile": m.tile,
            "source": list(m.source),
            "exposure_s": m.exposure_s,
            "mean_dn": self.mean_dn,
            "source_mean_dn": self.source_mean_dn,
            "fraction": self.fraction,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DarksCopied:
    kind: ClassVar[str] = "darks_copied"
    into: FileKey
    source: FileKey
    copied: int

    def fields(self) -> dict[str, Any]:
        return {"into": list(self.into), "source": list(self.source), "copied": self.copied}


@dataclass(frozen=True)
class ExposureFound:
    kind: ClassVar[str] = "autoexpose"
    message: AutoExpose
    result: ExposureResult

    def fields(self) -> dict[str, Any]:
        m = self.message
        return {
            "array": m.array,
            "polarization": m.polarization,
            "wavelength_nm": m.wavelength_nm,
            **self.result.to_json(),
        }


@dataclass(frozen=True)
class Retried:
    kind: ClassVar[str] = "retry"
    device: str
    command: str
    attempt: int
    error: str

    def fields(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "command": self.command,
            "attempt": self.attempt,
            "error": self.error,
        }


@dataclass(frozen=True)
class Suspended:
    """A suspender tripped on a band (it will be re-taken)."""

    kind: ClassVar[str] = "lamp_interrupted"
    message: Acquire
    reference_dn: float
    expected_dn: float
    retake: int

    def fields(self) -> dict[str, Any]:
        m = self.message
        return {
            "array": m.array,
            "tile": m.tile,
            "polarization": m.polarization,
            "wavelength_nm": m.wavelength_nm,
            "reference_dn": self.reference_dn,
            "expected_dn": self.expected_dn,
            "retake": self.retake,
        }


@dataclass(frozen=True)
class Resumed:
    kind: ClassVar[str] = "lamp_restored"
    waited_s: float
    reference_dn: float

    def fields(self) -> dict[str, Any]:
        return {"waited_s": self.waited_s, "reference_dn": self.reference_dn}


@dataclass(frozen=True)
class ArrayDone:
    """Every tile of ``array`` is closed (quick-looks)."""

    kind: ClassVar[str] = ""
    array: str

    def fields(self) -> dict[str, Any]:
        return {}


Document = (
    BandMeasured
    | BandSkipped
    | DarkMeasured
    | DarkChecked
    | DarksCopied
    | ExposureFound
    | Retried
    | Suspended
    | Resumed
    | ArrayDone
)
Subscriber = Callable[[Document], None]
Publish = Callable[[Document], None]

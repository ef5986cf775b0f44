"""What a run did, counted as it goes: for the summary, the run record and the benchmarks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


class ScanFault(RuntimeError):
    """A persistent fault stopped the scan; what is on disk is complete and resumable."""


class LampOut(ScanFault):
    """The lamp did not come back within ``[runner] lamp_max_wait_s``."""


@dataclass
class ScanStats:
    """Counts, and device time modelled (acquisition.time_model) beside wall time measured, per
    kind of step (benchmarks/bench_acquisition.py compares them)."""

    bands_acquired: int = 0
    bands_skipped: int = 0
    darks_acquired: int = 0
    darks_skipped: int = 0
    darks_copied: int = 0
    dark_checks: int = 0
    autoexposures: int = 0
    retries: int = 0
    flagged_bands: int = 0
    modeled_s: float = 0.0  # device time of the steps executed (acquisition.time_model)
    exposure_s: float = 0.0  # sum of frames x exposure of the sample camera's band grabs
    band_wall_s: float = 0.0  # wall time from syncing a band's devices to its write returning
    grab_wall_s: float = 0.0  # of which in the bands' grabs (both cameras, triggered together)
    write_wall_s: float = 0.0  # of which writing the band to its hypercube
    suspensions: dict[str, int] = field(default_factory=dict)  # suspender name -> trips
    modeled_by_kind: dict[str, float] = field(default_factory=dict)
    wall_by_kind: dict[str, float] = field(default_factory=dict)  # the same steps, measured

    @property
    def lamp_interruptions(self) -> int:
        return self.suspensions.get("lamp", 0)

    def add_model(self, kind: str, seconds: float) -> None:
        self.modeled_s += seconds
        self.modeled_by_kind[kind] = self.modeled_by_kind.get(kind, 0.0) + seconds

    @contextlib.contextmanager
    def wall(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.wall_by_kind[kind] = self.wall_by_kind.get(kind, 0.0) + elapsed

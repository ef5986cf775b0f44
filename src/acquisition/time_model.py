"""How long the hardware takes for each step of a plan, from the configured device figures.

One model for both uses: the dry run's time estimate (no device touched) and the runner's
``modeled_s`` (the same figures summed over the steps it really executed, with the exposures it
really used), whose ratio to the wall time is the runner's own overhead
(benchmarks/bench_acquisition.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from acquisition.scan_config import DryRunConfig


@dataclass(frozen=True)
class DeviceTimeModel:
    """``[dry_run]`` figures plus the filter's settle and the rotator's pause from the device
    tables. Every method returns device seconds."""

    figures: DryRunConfig
    filter_settle_s: float
    rotator_pause_s: float

    def move_s(self, start_um: tuple[float, float], end_um: tuple[float, float]) -> float:
        """MS-2000 axes move together: the longer axis distance at the stage speed, plus settle."""
        distance = max(abs(end_um[0] - start_um[0]), abs(end_um[1] - start_um[1]))
        return distance / (self.figures.stage_speed_mm_per_s * 1000.0) + self.figures.stage_settle_s

    def rotate_s(self, start_deg: float, end_deg: float) -> float:
        if start_deg == end_deg:
            return 0.0
        return (
            abs(end_deg - start_deg) / self.figures.rotator_speed_deg_per_s + self.rotator_pause_s
        )

    def frames_s(self, frames: int, exposure_s: float) -> float:
        """``frames`` exposures, each followed by its readout."""
        return frames * (exposure_s + self.figures.frame_readout_s)

"""Auto-exposure on bare glass, for both cameras at once.

Why on glass: glass is the brightest thing in the field (a pad transmits less), so an exposure
that puts glass at ``target_fraction`` of full scale can never saturate a pad at the same band,
and the flat at that exposure has the best signal-to-noise the camera allows.

Method: trigger both cameras together for one trial frame, read a high percentile of each (the
99.5th: hot pixels and a few noisy ones must not steer it, the Köhler edge must not either),
and scale each camera's exposure by ``target / level`` (the response is linear above black). A
saturated trial says nothing about how far over it is, so the exposure is cut by 8x instead.
Each camera stops once its level is within ``TOLERANCE`` of the target or its exposure is pinned
at a limit; at most ``max_iterations`` rounds. The reference camera's upper limit is the sample's
exposure (a band takes as long as the longer of the two). The start is fixed (``start_s``), never the
camera's current setting, so the same band always takes the same trial frames: a resumed scan
repeats a first run exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from acquisition.scan_config import ExposureConfig
from instruments.protocols import Frame

LEVEL_PERCENTILE = 99.5
SATURATED_LEVEL = 0.98  # of full scale: the trial tells nothing about how much light there is
TOLERANCE = 0.1  # relative distance from the target that ends the search
SATURATED_CUT = 8.0

# Both cameras triggered together at (sample_s, reference_s): one frame each.
GrabPair = Callable[[float, float], tuple[Frame, Frame]]


@dataclass(frozen=True)
class ExposureResult:
    """What the auto-exposure found for one band: the exposures (not yet on the ladder), the
    levels it predicts there, and the reference camera's signal rate the lamp watch expects."""

    sample_s: float
    reference_s: float
    sample_level: float  # predicted fraction of full scale at sample_s
    reference_level: float
    # Reference mean per second of exposure, black level included (about 1 % of full scale,
    # far inside the lamp watch's margin): what the lamp watch expects at any exposure.
    reference_dn_per_s: float
    iterations: int
    low_signal: bool  # glass stays below the low-signal fraction even at the longest exposure

    def to_json(self) -> dict[str, float | int | bool]:
        return {
            "sample_s": self.sample_s,
            "reference_s": self.reference_s,
            "sample_level": self.sample_level,
            "reference_level": self.reference_level,
            "reference_dn_per_s": self.reference_dn_per_s,
            "iterations": self.iterations,
            "low_signal": self.low_signal,
        }

    @classmethod
    def from_json(cls, data: dict[str, float | int | bool]) -> ExposureResult:
        return cls(
            float(data["sample_s"]),
            float(data["reference_s"]),
            float(data["sample_level"]),
            float(data["reference_level"]),
            float(data["reference_dn_per_s"]),
            int(data["iterations"]),
            bool(data["low_signal"]),
        )


def level(frame: Frame) -> float:
    """The frame's ``LEVEL_PERCENTILE`` as a fraction of full scale, over every other pixel of
    every other row (65k samples on a 512x512 frame: the percentile is as well defined, and the
    search does not add 10 ms per trial to the scan)."""
    sample = frame.data[::2, ::2] if min(frame.data.shape) >= 64 else frame.data
    return float(np.percentile(sample, LEVEL_PERCENTILE)) / frame.full_scale_counts


def _next_exposure(exposure_s: float, lvl: float, target: float, lo: float, hi: float) -> float:
    if lvl >= SATURATED_LEVEL:
        proposal = exposure_s / SATURATED_CUT
    else:
        proposal = exposure_s * target / max(lvl, 1e-4)
    return min(max(proposal, lo), hi)


def _done(exposure_s: float, lvl: float, target: float, lo: float, hi: float) -> bool:
    if lvl >= SATURATED_LEVEL:
        return exposure_s <= lo  # as short as allowed and still saturated: nothing left to try
    close = abs(lvl / target - 1.0) <= TOLERANCE
    pinned = (exposure_s >= hi and lvl < target) or (exposure_s <= lo and lvl > target)
    return close or pinned


def auto_expose(
    grab_pair: GrabPair,
    policy: ExposureConfig,
    sample_limits_s: tuple[float, float],
    reference_limits_s: tuple[float, float],
    start_s: float,
) -> ExposureResult:
    """Search both cameras' exposures (module docstring). ``*_limits_s`` are the cameras'
    ranges; the policy's ``[min_s, max_s]`` narrows them."""
    lo_s, hi_s = max(policy.min_s, sample_limits_s[0]), min(policy.max_s, sample_limits_s[1])
    lo_r, hi_r = max(policy.min_s, reference_limits_s[0]), min(policy.max_s, reference_limits_s[1])
    if not (lo_s < hi_s and lo_r < hi_r):
        raise ValueError(
            f"[exposure] {policy.min_s:g}..{policy.max_s:g} s does not overlap the cameras' "
            f"ranges {sample_limits_s} / {reference_limits_s} s"
        )
    target = policy.target_fraction
    e_s = min(max(start_s, lo_s), hi_s)
    e_r = min(max(start_s, lo_r), hi_r)
    lvl_s = lvl_r = 0.0
    trial_s, trial_r = e_s, e_r
    ref_rate = 0.0
    iterations = 0
    done_s = done_r = False
    while iterations < policy.max_iterations and not (done_s and done_r):
        iterations += 1
        trial_s, trial_r = e_s, e_r
        sample, reference = grab_pair(e_s, e_r)
        lvl_s, lvl_r = level(sample), level(reference)
        ref_rate = float(reference.data.mean()) / e_r
        done_s = _done(e_s, lvl_s, target, lo_s, hi_s)
        if not done_s:
            e_s = _next_exposure(e_s, lvl_s, target, lo_s, hi_s)
        # The reference never exposes longer than the sample: both are triggered together, so
        # a longer reference would lengthen every band, and its mean over thousands of pixels
        # is precise far below the target level.
        cap_r = max(min(hi_r, e_s), lo_r)
        done_r = _done(e_r, lvl_r, target, lo_r, cap_r) and e_r <= cap_r
        if not done_r:
            e_r = _next_exposure(e_r, lvl_r, target, lo_r, cap_r)
    # The levels the chosen exposures should give (linear response; a saturated trial stays 1).
    predicted_s = 1.0 if lvl_s >= SATURATED_LEVEL else lvl_s * e_s / trial_s
    predicted_r = 1.0 if lvl_r >= SATURATED_LEVEL else lvl_r * e_r / trial_r
    low = predicted_s < policy.low_signal_fraction and e_s >= hi_s
    return ExposureResult(
        sample_s=e_s,
        reference_s=e_r,
        sample_level=predicted_s,
        reference_level=predicted_r,
        reference_dn_per_s=ref_rate,
        iterations=iterations,
        low_signal=low,
    )

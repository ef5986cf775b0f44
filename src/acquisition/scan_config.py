"""The scan tables of a bench config: optics, bands, exposure policy, flat region, alignment.

The device tables belong to :mod:`instruments.config`; these tables say what a scan does with the
devices. Every field carries its unit in its name and a range, and a bad value is reported in one
line naming the file, the table, the field and the value (the same form as the device tables).
Every table is optional: its defaults are the MOCLIP setup (29 bands 450-730 nm, x and y
polarisations through a half-wave plate at 0 and 45 degrees).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator
from scipy.spatial import cKDTree

from common.config_model import StrictConfigModel
from instruments.config import validation_message
from instruments.protocols import BandwidthMode
from layout.manifest import ChipManifest, Corner

SCAN_TABLES = ("optics", "scan", "exposure", "flat", "alignment", "runner", "dry_run")
# Above this many bands a config is surely a unit mistake (step_nm in µm, say), not a scan.
MAX_BANDS = 2000


class OpticsConfig(StrictConfigModel):
    """``[optics]``: what one sample-camera frame covers on the chip."""

    um_per_px: float = Field(0.25, gt=0.001, le=100, description="Chip µm per camera pixel.")
    width_px: int = Field(512, ge=8, le=65536, description="Sample camera ROI width.")
    height_px: int = Field(512, ge=8, le=65536, description="Sample camera ROI height.")

    @property
    def fov_um(self) -> tuple[float, float]:
        """Field of view (width, height) in chip µm."""
        return self.width_px * self.um_per_px, self.height_px * self.um_per_px


class BandsConfig(StrictConfigModel):
    """``[scan]``: which bands, polarisations and frames make a tile, and how tiles overlap."""

    start_nm: float = Field(450.0, gt=0, le=5000)
    stop_nm: float = Field(730.0, gt=0, le=5000)
    step_nm: float = Field(10.0, gt=0, le=5000)
    bands_nm: tuple[float, ...] | None = Field(
        None, description="An explicit band list; replaces start/stop/step when given."
    )
    bandwidth: Literal["narrowest", "wide", "medium", "narrow"] = Field(
        "narrowest", description="'narrowest' asks the filter for its narrowest mode."
    )
    polarizations: dict[str, float] = Field(
        default_factory=lambda: {"x": 0.0, "y": 45.0},
        description="Polarisation name -> rotator angle in degrees (half-wave plate: 45 turns x to y).",
    )
    frames: int = Field(4, ge=1, le=10000, description="Sample frames averaged per band.")
    reference_frames: int = Field(4, ge=1, le=10000, description="Reference frames per band.")
    dark_frames: int = Field(8, ge=1, le=10000, description="Frames averaged per dark.")
    settle_s: float | None = Field(
        None, ge=0, le=60, description="Wait after a retune; default: [filter] settle_s."
    )
    overlap_um: float = Field(5.0, ge=0, le=10000, description="Least field shared by neighbours.")
    flat_per_array: bool = Field(False, description="One flat per array instead of per scan.")
    darks: Literal["per_tile", "per_array", "per_scan"] = Field(
        "per_array",
        description="Who takes darks: every tile, each array's first tile, or the scan's first "
        "file with a drift check at each array (acquisition.plan).",
    )
    dark_drift_fraction: float = Field(
        0.01,
        gt=0,
        le=1,
        description="per_scan: fresh darks when the checked dark's mean moved by more than this.",
    )
    dark_check_frames: int = Field(2, ge=1, le=10000, description="Frames of a dark check.")

    @model_validator(mode="after")
    def _check(self) -> BandsConfig:
        if self.bands_nm is not None:
            if not self.bands_nm:
                raise ValueError("bands_nm must list at least one wavelength")
            if len(set(self.bands_nm)) != len(self.bands_nm):
                raise ValueError(f"bands_nm {list(self.bands_nm)} lists a wavelength twice")
            if min(self.bands_nm) <= 0:
                raise ValueError(f"bands_nm {list(self.bands_nm)} must all be > 0 nm")
        elif self.stop_nm < self.start_nm:
            raise ValueError(f"stop_nm={self.stop_nm} must be >= start_nm={self.start_nm}")
        elif (self.stop_nm - self.start_nm) / self.step_nm + 1 > MAX_BANDS:
            raise ValueError(f"start/stop/step give more than {MAX_BANDS} bands; check step_nm")
        if not self.polarizations:
            raise ValueError("polarizations must name at least one polarisation")
        for name, angle in self.polarizations.items():
            if not name or not math.isfinite(angle) or not -360 <= angle <= 360:
                raise ValueError(f"polarizations.{name} = {angle}: need a name and -360..360 deg")
        return self

    @property
    def wavelengths_nm(self) -> tuple[float, ...]:
        if self.bands_nm is not None:
            return tuple(float(v) for v in self.bands_nm)
        n = math.floor((self.stop_nm - self.start_nm) / self.step_nm + 1e-9) + 1
        return tuple(round(self.start_nm + k * self.step_nm, 6) for k in range(n))

    def mode(self, narrowest: BandwidthMode = BandwidthMode.NARROW) -> BandwidthMode:
        """The bandwidth mode to scan in; ``narrowest`` is the connected filter's (a scan asks it;
        a dry run, which touches no device, assumes a Kurios VB1's NARROW)."""
        return narrowest if self.bandwidth == "narrowest" else BandwidthMode(self.bandwidth)


class ExposureConfig(StrictConfigModel):
    """``[exposure]``: the auto-exposure policy and the flag thresholds of dataset.quality.BandFlag.

    Exposures live on a geometric ladder ``2**(k / steps_per_octave)`` ms, so bands whose ideal
    exposures differ a little share one ladder value, and one dark per ladder value serves them all.
    """

    target_fraction: float = Field(0.7, gt=0.05, lt=1.0, description="Of full scale, on glass.")
    min_s: float = Field(1e-4, gt=0, le=100)
    max_s: float = Field(2.0, gt=0, le=100)
    steps_per_octave: int = Field(4, ge=1, le=64, description="Ladder steps per doubling.")
    max_iterations: int = Field(8, ge=1, le=50)
    saturation_fraction: float = Field(
        1e-3, ge=0, le=1, description="Pixels at full scale above this fraction flag SATURATED."
    )
    low_signal_fraction: float = Field(
        0.2, ge=0, le=1, description="Glass below this fraction of full scale at max_s: LOW_SIGNAL."
    )
    expected_exposure_s: float | None = Field(
        None, gt=0, le=100, description="Dry-run guess; default the geometric mean of min and max."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ExposureConfig:
        if not self.min_s < self.max_s:
            raise ValueError(f"min_s={self.min_s} must be < max_s={self.max_s}")
        return self

    def ladder_s(self) -> tuple[float, ...]:
        """Every allowed exposure, ascending: ladder values within [min_s, max_s]."""
        k_lo = math.ceil(self.steps_per_octave * math.log2(self.min_s * 1e3) - 1e-9)
        k_hi = math.floor(self.steps_per_octave * math.log2(self.max_s * 1e3) + 1e-9)
        return tuple(2.0 ** (k / self.steps_per_octave) * 1e-3 for k in range(k_lo, k_hi + 1))

    def quantise(self, exposure_s: float) -> float:
        """The ladder value nearest ``exposure_s`` in log terms, within [min_s, max_s]."""
        if not (math.isfinite(exposure_s) and exposure_s > 0):
            raise ValueError(f"exposure_s={exposure_s} must be a finite number > 0")
        ladder = np.array(self.ladder_s())
        if ladder.size == 0:  # min and max within one step: no ladder value between them
            return min(max(exposure_s, self.min_s), self.max_s)
        return float(ladder[np.argmin(np.abs(np.log(ladder / exposure_s)))])

    @property
    def estimated_s(self) -> float:
        guess = self.expected_exposure_s or math.sqrt(self.min_s * self.max_s)
        return self.quantise(guess)


class FlatConfig(StrictConfigModel):
    """``[flat]``: the bare-glass point (chip µm) whose images flat-field every band.

    Leave ``x_um``/``y_um`` out to take :func:`default_flat_point` of the manifest.
    """

    x_um: float | None = None
    y_um: float | None = None
    clearance_um: float = Field(
        50.0, ge=0, le=1e5, description="Least gap between the flat's field and any pad or cross."
    )

    @model_validator(mode="after")
    def _both(self) -> FlatConfig:
        if (self.x_um is None) != (self.y_um is None):
            raise ValueError("give both x_um and y_um, or neither (computed from the manifest)")
        return self


class FiducialPosition(StrictConfigModel):
    """One measured fiducial: which cross (pad-table row ``index``, or ``array`` + ``corner``) and
    the stage reading with it centred under the optical axis."""

    index: int | None = Field(None, ge=0)
    array: str | None = None
    corner: Corner | None = None
    x_um: float
    y_um: float

    @model_validator(mode="after")
    def _one_reference(self) -> FiducialPosition:
        by_name = self.array is not None and self.corner is not None
        if (self.index is not None) == by_name or (self.array is None) != (self.corner is None):
            raise ValueError("name a fiducial by index, or by array and corner (not both)")
        return self


class AlignmentConfig(StrictConfigModel):
    """``[alignment]``: stage positions of three or more fiducials, or ``automatic = true`` on the
    simulated bench (the simulator knows where it mounted the chip and plays the user)."""

    automatic: bool = False
    fiducials: tuple[FiducialPosition, ...] = ()
    max_residual_um: float = Field(2.0, gt=0, le=1000)
    simulated_error_sd_um: float = Field(
        0.3, ge=0, le=100, description="automatic: how far off each simulated centring is."
    )
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _enough(self) -> AlignmentConfig:
        if self.automatic and self.fiducials:
            raise ValueError("automatic = true takes no fiducials list")
        if not self.automatic and 0 < len(self.fiducials) < 3:
            raise ValueError(f"an affine alignment needs >= 3 fiducials, got {len(self.fiducials)}")
        return self

    @property
    def is_given(self) -> bool:
        return self.automatic or len(self.fiducials) >= 3


class RunnerConfig(StrictConfigModel):
    """``[runner]``: how the runner meets faults, and how it watches the lamp.

    Drivers already retry a lost or garbled reply (instruments.ascii_instrument.RetryPolicy);
    the runner retries a whole *step* (an absolute move, a retune, a grab) when it still fails
    with a transient fault or a motion that did not end in time, ``step_attempts`` times in all,
    and otherwise stops the scan in a resumable state. The lamp watch compares each band's
    reference reading with what the auto-exposure saw on glass at that band.
    """

    step_attempts: int = Field(3, ge=1, le=10)
    step_backoff_s: float = Field(0.2, ge=0, le=60)
    device_timeout_s: float = Field(30.0, gt=0, le=600, description="Per motion or retune.")
    lamp_collapse_fraction: float = Field(
        0.5, gt=0, lt=1, description="Reference below this fraction of expected: lamp out."
    )
    lamp_recover_fraction: float = Field(
        0.9, gt=0, le=1, description="Back above this fraction (twice in a row): lamp back."
    )
    lamp_poll_s: float = Field(0.5, gt=0, le=60)
    lamp_max_wait_s: float = Field(600.0, gt=0, le=86400, description="Then stop the scan.")
    lamp_retakes: int = Field(3, ge=1, le=100, description="Re-takes of one band at most.")
    durable: bool = Field(True, description="fsync each band (survives a power cut).")

    @model_validator(mode="after")
    def _ordered(self) -> RunnerConfig:
        if not self.lamp_collapse_fraction < self.lamp_recover_fraction:
            raise ValueError(
                f"lamp_collapse_fraction={self.lamp_collapse_fraction} must be < "
                f"lamp_recover_fraction={self.lamp_recover_fraction}"
            )
        return self


class DryRunConfig(StrictConfigModel):
    """``[dry_run]``: device figures a dry run uses instead of asking the devices (it touches none).

    Defaults: Kurios VB1 range (manual), MS-2000 power-on speed of our emulator (5 mm/s), ELL14
    ~430 deg/s (quoted, instruments.md), readout of a 16-bit 512x512 ROI over USB3 (assumption).
    """

    filter_range_nm: tuple[float, float] = (420.0, 730.0)
    stage_speed_mm_per_s: float = Field(5.0, gt=0, le=1000)
    stage_settle_s: float = Field(0.05, ge=0, le=60)
    rotator_speed_deg_per_s: float = Field(430.0, gt=0, le=1e5)
    frame_readout_s: float = Field(0.01, ge=0, le=60, description="Per frame, beyond exposure.")
    autoexpose_frames: int = Field(3, ge=1, le=100, description="Trial frames per auto-exposure.")

    @model_validator(mode="after")
    def _ordered(self) -> DryRunConfig:
        lo, hi = self.filter_range_nm
        if not 0 < lo < hi:
            raise ValueError(f"filter_range_nm = [{lo}, {hi}] must have 0 < low < high")
        return self


class ScanConfig(StrictConfigModel):
    optics: OpticsConfig = OpticsConfig()
    scan: BandsConfig = BandsConfig()
    exposure: ExposureConfig = ExposureConfig()
    flat: FlatConfig = FlatConfig()
    alignment: AlignmentConfig = AlignmentConfig()
    runner: RunnerConfig = RunnerConfig()
    dry_run: DryRunConfig = DryRunConfig()


def scan_config(raw: dict[str, Any], path: Path) -> ScanConfig:
    """The scan tables of a parsed bench config (other tables are the devices' and simulation's).

    TOML arrays arrive as lists; they are turned into tuples here so strict validation can keep
    the models frozen and hashable.
    """
    tables = {key: _tuples(raw[key]) for key in SCAN_TABLES if key in raw}
    try:
        return ScanConfig.model_validate(tables)
    except ValidationError as exc:
        raise ValueError(validation_message(path, exc)) from None


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _fiducial_arm_um(manifest: ChipManifest) -> float:
    """The chip config's fiducial arm (a dict in memory, JSON text once read back), else 0."""
    chip = manifest.attrs.get("config", {})
    if isinstance(chip, str):
        try:
            chip = json.loads(chip)
        except json.JSONDecodeError:
            chip = {}
    value = chip.get("fiducial_arm_um", 0.0) if isinstance(chip, dict) else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def default_flat_point(
    manifest: ChipManifest,
    clearance_um: float = 50.0,
    fov_um: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, float]:
    """A bare-glass point (chip µm) whose field of view stays ``clearance_um`` from every pad and
    fiducial, as close as possible to the centre of the pattern (less stage travel, and the same
    part of the chip the pads see).

    Candidates lie on a grid over the pattern's bounding box widened by one field plus the
    clearance on each side, so a chip with no room between its arrays still gets a point just
    outside them. Each pad-table row is treated as a square of the larger of the pad size and
    twice the fiducial arm (crosses are that wide).
    """
    pads = np.column_stack([manifest.pads.x_um, manifest.pads.y_um])
    if pads.shape[0] == 0:
        raise ValueError("the manifest has no pads or fiducials to keep the flat clear of")
    arm = _fiducial_arm_um(manifest)
    half = max(manifest.pad_size_um, 2 * arm) / 2
    reach_x = fov_um[0] / 2 + half + clearance_um
    reach_y = fov_um[1] / 2 + half + clearance_um
    step = max(min(reach_x, reach_y) / 2, 1.0)
    widen = np.array([reach_x + step, reach_y + step])
    lo = pads.min(axis=0) - widen
    hi = pads.max(axis=0) + widen
    xs = np.arange(lo[0], hi[0] + step, step)
    ys = np.arange(lo[1], hi[1] + step, step)
    gx, gy = np.meshgrid(xs, ys)
    candidates = np.column_stack([gx.ravel(), gy.ravel()])
    scale = np.array([1 / reach_x, 1 / reach_y])
    # Scaled Chebyshev distance >= 1: the field is clear of a pad along x or along y.
    distance, _ = cKDTree(pads * scale).query(candidates * scale, p=np.inf)
    clear = candidates[distance >= 1.0]
    if clear.shape[0] == 0:  # the widened grid always has clear edge points; belt and braces
        raise ValueError(f"no point {clearance_um} µm clear of every pad; set [flat] x_um, y_um")
    centre = (pads.min(axis=0) + pads.max(axis=0)) / 2
    best = clear[np.argmin(np.hypot(*(clear - centre).T))]
    return float(best[0]), float(best[1])

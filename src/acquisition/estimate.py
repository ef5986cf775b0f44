"""Dry run: drive the scan plan with a stub, check it against the devices' limits, estimate time
and disk, and touch no device.

Time model (each message, in device seconds; the runner's software overhead is not included, it is
what benchmarks/bench_acquisition.py measures):

* ``Move``: the longer axis distance / ``[dry_run] stage_speed_mm_per_s`` (MS-2000 axes move
  together) + ``stage_settle_s``; the first move counts from the stage origin (0, 0).
* ``Rotate``: |angle change| / ``rotator_speed_deg_per_s`` + ``[rotator] move_pause_s``; nothing
  when the angle does not change; the first counts from 0 degrees.
* ``SetWavelength``: its ``settle_s``; ``SetMode``: the filter's settle time.
* ``AutoExpose``: ``autoexpose_frames`` x (exposure + ``frame_readout_s``), at the estimated
  exposure (both cameras at once; the reference camera is assumed at the same exposure).
* ``Acquire``: max(frames, reference frames) x (exposure + readout): both cameras are triggered
  together. ``AcquireDark``: frames x (exposure + readout), one camera at a time; so is a
  ``CheckDark``, answered "no drift" (a dry run has no dark to compare).

The exposure of every band is one estimate: ``[exposure] expected_exposure_s`` or, without it,
the geometric mean of ``min_s`` and ``max_s``, on the ladder. A dry run has no light to measure;
the simulated bench's glass needs ~20 ms in bright bands and ~12x that in the blue.

Disk model: every tile file and every flat file is preallocated at full size (contract 3):
P x B x H x W float32 for the section, plus D x H x W float32 darks (D distinct sample-camera
exposures; each tile and the flat hold their own); the per-band scalars and the reference
camera's dark means are negligible.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from acquisition.messages import (
    Acquire,
    AcquireDark,
    Answer,
    AutoExpose,
    CheckDark,
    DarkDrift,
    Exposures,
    Message,
    Move,
    OpenFlat,
    OpenTile,
    Rotate,
    SetExposure,
    SetMode,
    SetWavelength,
)
from acquisition.plan import scan_plan
from acquisition.scan_config import ScanConfig
from acquisition.scan_setup import ScanSetup
from acquisition.time_model import DeviceTimeModel
from instruments.config import InstrumentsConfig
from instruments.protocols import BandwidthMode
from layout.affine import Affine2D
from layout.manifest import ChipManifest

BYTES_PER_VALUE = 4  # float32 images
# How many violations of one kind the error message shows before it gives only the count.
SHOWN_PER_KIND = 2


@dataclass(frozen=True)
class DeviceLimits:
    """What a dry run checks against, taken from the config (never asked of a device)."""

    wavelength_range_nm: tuple[float, float]
    x_limits_um: tuple[float, float]
    y_limits_um: tuple[float, float]
    filter_settle_s: float
    rotator_pause_s: float

    @classmethod
    def from_config(cls, instruments: InstrumentsConfig, config: ScanConfig) -> DeviceLimits:
        limits = instruments.stage.soft_limits_um
        return cls(
            config.dry_run.filter_range_nm,
            limits["x"],
            limits["y"],
            instruments.filter.settle_s,
            instruments.rotator.move_pause_s,
        )


@dataclass(frozen=True)
class DryRunReport:
    arrays: tuple[str, ...]
    tiles: dict[str, int]
    steps: dict[str, int]  # message kind -> count
    seconds_by_kind: dict[str, float]
    duration_s: float
    bytes_needed: int
    bytes_free: int
    exposures_s: tuple[float, ...]  # distinct exposures (the darks taken)
    pads: int  # pads wholly inside some tile
    alignment_rms_um: float | None = None
    alignment_max_um: float | None = None
    notes: tuple[str, ...] = field(default=())


def format_duration(seconds: float) -> str:
    """h:mm:ss, rounded up to the next second."""
    total = math.ceil(seconds)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def _free_bytes(output: Path) -> int:
    """Free space where the output will go: the nearest existing folder up its path."""
    folder = Path(output).resolve()
    while not folder.exists():
        folder = folder.parent
    return int(shutil.disk_usage(folder).free)


class _Violations:
    """Every violation of the plan, grouped by kind, for one error message."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str) -> None:
        self.by_kind.setdefault(kind, []).append(detail)

    def raise_if_any(self) -> None:
        if not self.by_kind:
            return
        parts = []
        for kind, details in self.by_kind.items():
            shown = "; ".join(details[:SHOWN_PER_KIND])
            more = (
                f" (+{len(details) - SHOWN_PER_KIND} more)" if len(details) > SHOWN_PER_KIND else ""
            )
            parts.append(f"{len(details)} {kind}: {shown}{more}")
        total = sum(len(d) for d in self.by_kind.values())
        raise ValueError(f"dry run found {total} problem(s): " + " | ".join(parts))


def dry_run(
    manifest: ChipManifest,
    config: ScanConfig,
    limits: DeviceLimits,
    transform: Affine2D,
    output: Path,
    arrays: Sequence[str] | None = None,
    *,
    flat_chip_um: tuple[float, float],
    settle_s: float | None = None,
    mode: BandwidthMode = BandwidthMode.NARROW,
    on_disk_bytes: int = 0,
) -> DryRunReport:
    """Walk the whole plan as the runner would, answering every ``AutoExpose`` with the estimated
    exposure; collect every violation and raise them as one ValueError, else report.

    ``on_disk_bytes``: hypercubes a resumed scan already holds (preallocated, so they need no
    more space); the disk check asks only for the rest."""
    settle = limits.filter_settle_s if settle_s is None else settle_s
    plan = scan_plan(
        manifest, config, transform, arrays, flat_chip_um=flat_chip_um, settle_s=settle, mode=mode
    )
    d = config.dry_run
    model = DeviceTimeModel(d, limits.filter_settle_s, limits.rotator_pause_s)
    estimate_s = config.exposure.estimated_s
    lo_nm, hi_nm = limits.wavelength_range_nm
    violations = _Violations()
    steps: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    tiles: Counter[str] = Counter()
    flats = 0
    pads: set[int] = set()
    position = (0.0, 0.0)
    angle = 0.0
    exposure_s = estimate_s
    darks: set[float] = set()
    answer: Answer = None
    while True:
        try:
            message: Message = plan.send(answer)
        except StopIteration:
            break
        answer = None
        kind = type(message).__name__
        steps[kind] += 1
        cost = 0.0
        if isinstance(message, Move):
            x, y = message.x_um, message.y_um
            if not (limits.x_limits_um[0] <= x <= limits.x_limits_um[1]) or not (
                limits.y_limits_um[0] <= y <= limits.y_limits_um[1]
            ):
                violations.add(
                    "moves outside the stage soft limits",
                    f"({x:.1f}, {y:.1f}) µm vs x {list(limits.x_limits_um)}, "
                    f"y {list(limits.y_limits_um)}",
                )
            cost = model.move_s(position, (x, y))
            position = (x, y)
        elif isinstance(message, Rotate):
            cost = model.rotate_s(angle, message.angle_deg)
            angle = message.angle_deg
        elif isinstance(message, SetWavelength):
            wl = message.wavelength_nm
            if not lo_nm <= wl <= hi_nm:
                violations.add(
                    "wavelengths outside the filter range",
                    f"{wl:g} nm vs {lo_nm:g}-{hi_nm:g} nm",
                )
            cost = message.settle_s
        elif isinstance(message, SetMode):
            cost = limits.filter_settle_s
        elif isinstance(message, AutoExpose):
            cost = model.frames_s(d.autoexpose_frames, estimate_s)
            answer = Exposures(estimate_s, estimate_s)
        elif isinstance(message, SetExposure):
            exposure_s = message.exposure_s
        elif isinstance(message, Acquire):
            cost = model.frames_s(max(message.frames, message.reference_frames), exposure_s)
        elif isinstance(message, AcquireDark):
            if message.camera == "sample":
                darks.add(message.exposure_s)
            cost = model.frames_s(message.frames, message.exposure_s)
        elif isinstance(message, CheckDark):
            cost = model.frames_s(message.frames, message.exposure_s)
            answer = DarkDrift(0.0, False)
        elif isinstance(message, OpenTile):
            tiles[message.array] += 1
            pads.update(message.pads)
        elif isinstance(message, OpenFlat):
            flats += 1
        seconds[kind] = seconds.get(kind, 0.0) + cost

    s = config.scan
    o = config.optics
    image = o.width_px * o.height_px * BYTES_PER_VALUE
    per_file = len(s.polarizations) * len(s.wavelengths_nm) * image + len(darks) * image
    needed = max(0, (sum(tiles.values()) + flats) * per_file - on_disk_bytes)
    free = _free_bytes(output)
    if needed > free:
        violations.add(
            "disk space shortfalls",
            f"{needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free under {output}",
        )
    violations.raise_if_any()
    names = tuple(manifest.arrays.name) if arrays is None else tuple(arrays)
    return DryRunReport(
        arrays=names,
        tiles=dict(tiles),
        steps=dict(steps),
        seconds_by_kind=seconds,
        duration_s=float(sum(seconds.values())),
        bytes_needed=needed,
        bytes_free=free,
        exposures_s=tuple(sorted(darks)),
        pads=len(pads),
        notes=(f"every band assumed at {estimate_s * 1e3:.3g} ms exposure",),
    )


def setup_dry_run(setup: ScanSetup, output: Path, on_disk_bytes: int = 0) -> DryRunReport:
    """The dry run of a prepared scan (``scan --dry-run``, and the runner's check before it
    connects: a plan the devices or the disk cannot take is refused before anything moves)."""
    report = dry_run(
        setup.manifest,
        setup.config,
        DeviceLimits.from_config(setup.instruments, setup.config),
        setup.alignment.transform,
        output,
        setup.arrays,
        flat_chip_um=setup.flat_chip_um,
        settle_s=setup.settle_s,
        mode=setup.config.scan.mode(),
        on_disk_bytes=on_disk_bytes,
    )
    fit = setup.alignment
    return replace(report, alignment_rms_um=fit.rms_residual, alignment_max_um=fit.max_residual)

"""Dry run: limits, disk and the time estimate of a plan, and ``metascan scan --dry-run``."""

from __future__ import annotations

import shutil
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from acquisition.cli import scan_dry_run
from acquisition.estimate import DeviceLimits, DryRunReport, dry_run, format_duration
from acquisition.scan_config import ScanConfig, scan_config
from layout.affine import Affine2D
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, write_manifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LIMITS = DeviceLimits((420.0, 730.0), (-1e4, 1e4), (-1e4, 1e4), 0.05, 0.1)
SHIFT = Affine2D(np.eye(2), np.array([1000.0, 2000.0]))
FLAT = (-300.0, -100.0)
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """One 4x4 array of 6 µm pads at the origin (24 µm: one tile)."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=4, cols=4, replicas=1, companion_size=0)
    return plan_chip(generate(16, seed=2), config)


def tiny(**scan: object) -> ScanConfig:
    raw = {
        "optics": {"um_per_px": 1.0, "width_px": 40, "height_px": 40},
        "scan": {"bands_nm": [500.0, 600.0], "frames": 2, "reference_frames": 3, "dark_frames": 4}
        | scan,
        "exposure": {"min_s": 1e-3, "max_s": 1.0, "expected_exposure_s": 0.016},
        "dry_run": {
            "stage_speed_mm_per_s": 5.0,
            "stage_settle_s": 0.05,
            "rotator_speed_deg_per_s": 430.0,
            "frame_readout_s": 0.01,
            "autoexpose_frames": 3,
        },
    }
    return scan_config(raw, Path("tiny.toml"))


def run(
    manifest: ChipManifest, config: ScanConfig, output: Path, transform: Affine2D = SHIFT
) -> DryRunReport:
    return dry_run(manifest, config, LIMITS, transform, output, flat_chip_um=FLAT, settle_s=0.07)


def test_time_estimate_matches_a_hand_computation(manifest: ChipManifest, tmp_path: Path) -> None:
    report = run(manifest, tiny(), tmp_path)
    frame = 0.016 + 0.01  # 16 ms is on the 2**(k/4) ms ladder
    move = (1900.0 / 5000.0 + 0.05) + (max(1012.0 - 700.0, 2012.0 - 1900.0) / 5000.0 + 0.05)
    # x at 0 is no move; then y (exposure sweep), x, y (flat), x, y (tile)
    rotate = 5 * (45.0 / 430.0 + 0.1)
    retune = 12 * 0.07  # 2 polarisations x 2 bands x (sweep + flat + tile)
    modes = 5 * 0.05  # narrowest, then black and narrowest around the flat's and the tile's darks
    autoexpose = 4 * 3 * frame
    acquire = 8 * 3 * frame  # max(2 sample, 3 reference) frames
    dark = 2 * (4 + 3) * frame  # at the flat and at the tile: sample (4 frames), reference (3)
    expected = move + rotate + retune + modes + autoexpose + acquire + dark
    assert report.duration_s == pytest.approx(expected, rel=1e-12)
    assert report.seconds_by_kind["Move"] == pytest.approx(move)
    assert report.tiles == {"A0R0": 1} and report.pads == 16
    assert report.steps["Acquire"] == 8 and report.steps["AcquireDark"] == 4
    assert report.exposures_s == (0.016,)
    image = 40 * 40 * 4
    assert report.bytes_needed == 2 * (2 * 2 * image + 1 * image)  # one tile file, one flat file


def test_every_violation_is_reported_in_one_line(manifest: ChipManifest, tmp_path: Path) -> None:
    far = Affine2D(np.eye(2), np.array([30000.0, 0.0]))
    with pytest.raises(ValueError) as info:
        run(manifest, tiny(bands_nm=[400.0, 500.0, 740.0]), tmp_path, transform=far)
    message = str(info.value)
    assert "\n" not in message
    assert "2 moves outside the stage soft limits" in message
    # 400 and 740 nm, each in 2 polarisations x (exposure sweep + flat + tile)
    assert "12 wavelengths outside the filter range: 400 nm vs 420-730 nm" in message
    assert "(+10 more)" in message
    assert message.startswith("dry run found 14 problem(s)")


def test_disk_shortfall_is_reported(
    manifest: ChipManifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ValueError, match=r"1 disk space shortfalls: 0\.00 GB needed"):
        run(manifest, tiny(), tmp_path / "not" / "yet")


def test_format_duration() -> None:
    assert format_duration(0.2) == "0:00:01"
    assert format_duration(3723.0) == "1:02:03"


def test_cli_prints_the_figures(manifest: ChipManifest, tmp_path: Path, cli: Cli) -> None:
    chip = tmp_path / "chip.h5"
    write_manifest(chip, manifest)
    config = CONFIGS / "sim-bench.toml"
    args = ("scan", "--config", str(config), "--manifest", str(chip), "--output", str(tmp_path))
    code, out, err = cli(*args, "--dry-run")
    assert code == 0, err
    report = scan_dry_run(config, chip, tmp_path, None)
    assert report.alignment_rms_um is not None and report.alignment_rms_um < 1.0
    assert f"tiles      {sum(report.tiles.values())} (A0R0 1)" in out
    assert f"steps      {sum(report.steps.values())} (" in out
    assert f"Acquire {report.steps['Acquire']}," in out
    assert f"duration   {format_duration(report.duration_s)}" in out
    assert f"{report.bytes_needed / 1e9:.3f} GB needed" in out
    assert f"residual rms {report.alignment_rms_um:.3f} µm" in out

    code, out, err = cli(*args, "--dry-run", "--arrays", "A0R0,A7R3")
    assert code == 2 and out == ""
    assert err.strip() == "error: array 'A7R3' is not on chip 'chip'; arrays are A0R0"

"""The scan tables of a bench config: defaults, one-line errors, the exposure ladder, the flat."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from acquisition.scan_config import ExposureConfig, default_flat_point, scan_config
from instruments.config import read_toml
from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HERE = Path("bench.toml")


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    config = ChipConfig(thickness_nm=178, arrays=2, rows=4, cols=4, replicas=2, companion_size=2)
    return plan_chip(generate(40, seed=3), config)


def test_defaults_are_the_moclip_setup() -> None:
    config = scan_config({}, HERE)
    bands = config.scan.wavelengths_nm
    assert len(bands) == 29 and bands[0] == 450.0 and bands[-1] == 730.0
    assert np.allclose(np.diff(bands), 10.0)
    assert config.scan.polarizations == {"x": 0.0, "y": 45.0}
    assert config.optics.fov_um == (512 * 0.25, 512 * 0.25)
    assert config.scan.mode(BandwidthMode.MEDIUM) is BandwidthMode.MEDIUM  # the filter's narrowest
    assert not config.alignment.is_given


def test_explicit_band_list_and_bandwidth() -> None:
    config = scan_config({"scan": {"bands_nm": [500, 550.5], "bandwidth": "wide"}}, HERE)
    assert config.scan.wavelengths_nm == (500.0, 550.5)
    assert config.scan.mode() is BandwidthMode.WIDE


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"scan": {"frames": 0}}, "scan.frames"),
        ({"scan": {"bands_nm": [500, 500]}}, "scan"),
        ({"scan": {"stop_nm": 400}}, "scan"),
        ({"optics": {"um_per_pixel": 0.2}}, "optics.um_per_pixel"),
        ({"exposure": {"min_s": 1.0, "max_s": 0.5}}, "exposure"),
        ({"alignment": {"fiducials": [{"index": 1, "x_um": 0, "y_um": 0}]}}, "alignment"),
        (
            {"alignment": {"fiducials": [{"index": 1, "array": "A0R0", "x_um": 0, "y_um": 0}]}},
            "alignment.fiducials.0",
        ),
        ({"flat": {"x_um": 3.0}}, "flat"),
    ],
)
def test_bad_values_give_one_line_naming_file_and_field(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError) as info:
        scan_config(raw, HERE)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{HERE}: {where}")


def test_shipped_configs_validate() -> None:
    for name in ("sim-bench.toml", "lab-bench.example.toml"):
        path = CONFIGS / name
        config = scan_config(read_toml(path), path)
        assert config.alignment.is_given
    sim = scan_config(read_toml(CONFIGS / "sim-bench.toml"), CONFIGS / "sim-bench.toml")
    assert sim.alignment.automatic


def test_exposures_snap_to_a_geometric_ladder() -> None:
    policy = ExposureConfig(min_s=1e-3, max_s=1.0, steps_per_octave=4)
    ladder = policy.ladder_s()
    k = np.log2(np.array(ladder) * 1e3) * 4
    assert np.allclose(k, np.round(k))  # every value is 2**(k/4) ms
    assert (
        ladder[0] >= 1e-3
        and ladder[-1] <= 1.0
        and len(ladder) == math.floor(4 * math.log2(1000)) + 1
    )
    # Two bands whose ideal exposures differ by 3 % share a dark.
    assert policy.quantise(0.0200) == policy.quantise(0.0206)
    for value in (1e-6, 0.0123, 0.5, 50.0):
        q = policy.quantise(value)
        assert q in ladder
        assert policy.quantise(q) == q
    assert policy.quantise(1e-6) == ladder[0] and policy.quantise(50.0) == ladder[-1]
    assert math.isclose(policy.estimated_s, policy.quantise(math.sqrt(1e-3 * 1.0)))
    with pytest.raises(ValueError, match="exposure_s"):
        policy.quantise(0.0)


def test_default_flat_point_keeps_the_field_clear(manifest: ChipManifest) -> None:
    fov = (40.0, 30.0)
    clearance = 20.0
    x, y = default_flat_point(manifest, clearance, fov)
    half = max(manifest.pad_size_um, 20.0) / 2  # crosses are 2 x 10 µm arms wide
    gap_x = np.abs(manifest.pads.x_um - x) - fov[0] / 2 - half
    gap_y = np.abs(manifest.pads.y_um - y) - fov[1] / 2 - half
    gap = np.hypot(np.maximum(gap_x, 0), np.maximum(gap_y, 0))
    assert gap.min() >= clearance - 1e-9
    # Near the pattern, not off in a corner of the search grid.
    lo = np.array([manifest.pads.x_um.min(), manifest.pads.y_um.min()])
    hi = np.array([manifest.pads.x_um.max(), manifest.pads.y_um.max()])
    assert np.all(np.array([x, y]) > lo - 100) and np.all(np.array([x, y]) < hi + 100)

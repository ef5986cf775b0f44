"""A simulated bench given a chip: the real drivers move the emulators, the cameras see the chip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquisition.bench import connected_bench
from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest
from simulators.microscope.bench_setup import MicroscopeTable, build_microscope

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MICROSCOPE = """
[simulation.microscope]
camera_feed = "{feed}"
lamp = {{ drift_rms = 0.0, flicker_rms = 0.0 }}
"""


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    config = ChipConfig(thickness_nm=178, arrays=1, rows=4, cols=4, replicas=2, companion_size=2)
    return plan_chip(generate(32, seed=3), config)


def bench_file(tmp_path: Path, feed: str) -> Path:
    text = (CONFIGS / "sim-bench.toml").read_text().replace("time_scale = 1.0", "time_scale = 0.01")
    # Grabs that must succeed get 10 s beyond the exposure: more than a busy machine can take.
    text = text.replace("bit_depth = 16\n", "bit_depth = 16\nreadout_margin_s = 10.0\n")
    text = text.replace("width_px = 512", "width_px = 160").replace(
        "height_px = 512", "height_px = 160"
    )
    path = tmp_path / "bench.toml"
    path.write_text(text + MICROSCOPE.format(feed=feed))
    return path


@pytest.mark.parametrize("feed", ["pylon", "direct"])
def test_driven_devices_change_what_the_cameras_see(
    tmp_path: Path, manifest: ChipManifest, feed: str
) -> None:
    table = MicroscopeTable(sensor={"width_px": 160, "height_px": 160})
    with build_microscope(manifest, table, seed=0) as twin:
        k = manifest.arrays.name.index("A0R0")
        centre = twin.chip_to_stage(
            manifest.arrays.origin_x_um[k] + 12.0, manifest.arrays.origin_y_um[k] + 12.0
        )
        glass = twin.chip_to_stage(-40.0, -40.0)
    with connected_bench(bench_file(tmp_path, feed), manifest) as bench:
        bench.camera.bit_depth = 12
        bench.camera.exposure_s = 0.01
        bench.filter.wavelength_nm = 600.0
        bench.filter.wait_until_ready(timeout_s=10.0)
        bench.rotator.move_to(0.0)

        def grab_at(xy: tuple[float, float]) -> np.ndarray:
            bench.stage.move_to(*xy)
            bench.stage.wait_until_idle(timeout_s=10.0)
            return bench.camera.grab(2).data

        on_array, on_glass = grab_at(centre), grab_at(glass)
        # Glass is uniform up to Koehler fall-off; the array shows 16 pads of differing contrast.
        assert on_glass.std() / on_glass.mean() < 0.05
        assert on_array[40:120, 40:120].std() > 3 * on_glass[40:120, 40:120].std()
        bench.filter.bandwidth_mode = BandwidthMode.BLACK
        bench.filter.wait_until_ready(timeout_s=10.0)
        dark = bench.camera.grab(1).data
        assert dark.mean() < 0.1 * on_glass.mean()
        bench.filter.bandwidth_mode = BandwidthMode.NARROW
        bench.filter.wait_until_ready(timeout_s=10.0)
        reference = bench.reference_camera.grab(1).data
        assert reference.shape == (64, 64) and reference.max() > 3 * reference.min()  # a lamp spot


def test_tcp_served_devices_cannot_drive_the_microscope(
    tmp_path: Path, manifest: ChipManifest
) -> None:
    text = (CONFIGS / "sim-bench.toml").read_text()
    text = text.replace('address = "sim"', 'address = "TCPIP::127.0.0.1::1::SOCKET"', 1)
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with (
        pytest.raises(ValueError, match="need in-process emulators, but filter"),
        connected_bench(path, manifest),
    ):
        pass

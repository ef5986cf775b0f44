"""Virtual-microscope benchmark: prints one JSON object.

Builds a chip of one 30x30 array of 6 µm pads (180 µm, most of a 205 µm field at 0.1 µm per
pixel) from generated designs, then times sample-camera frames at 12 bits for each sensor size
(2048x2048 and 512x512) and thread count (2 and 1), medians of ``--repeats`` runs:

* ``cold_ms``: the first frame at a new stage position (the view's geometry is built);
* ``new_band_ms``: the first frame of a new band at the same position (new transmission map);
* ``next_frame_ms``: a further frame of the same band (lamp factor and sensor noise only).

One-off costs come before the timings and are reported apart: the spectral solve of every pad on
the fine grid and the sensor's noise table (``setup_s``). The issue's target is a 2048x2048 frame
in <= 100 ms. Then, at 512x512 and 2 threads: ``SimCamera.grab(4)`` with ``time_scale=0``, and the
same through :class:`PylonImageFeed` (the real Basler driver on pylon's emulated camera, frames
handed over as 16-bit PNGs), each in ms per grab of 4 frames.

Usage: python benchmarks/bench_microscope.py [--repeats 5] [--skip-pylon]
"""

from __future__ import annotations

import os

# pylon may read PYLON_CAMEMU when its transport-layer factory is first built: set it before
# anything imports pypylon (enable_pylon_emulation checks that it took effect).
os.environ.setdefault("PYLON_CAMEMU", "1")

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from simulators.microscope.cameras import PylonImageFeed, SimCamera
from simulators.microscope.config import MicroscopeConfig, MicroscopeOptics, SensorConfig
from simulators.microscope.microscope import OpticalState, VirtualMicroscope
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import FabricationConfig, VirtualChip

ROWS = COLS = 30
UM_PER_PX = 0.1
EXPOSURE_S = 0.02


class FixedState:
    """A bench standing still: one filter setting, x polarisation, one stage position."""

    def __init__(self, state: OpticalState) -> None:
        self.state = state

    def optical_state(self) -> OpticalState:
        return self.state


def median_ms(run: Callable[[int], object], repeats: int) -> float:
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        run(r)
        times.append(time.perf_counter() - start)
    return round(1e3 * statistics.median(times), 2)


def make_chip() -> VirtualChip:
    config = ChipConfig(
        thickness_nm=178, arrays=1, rows=ROWS, cols=COLS, replicas=1, companion_size=0, seed=1
    )
    manifest = plan_chip(generate(ROWS * COLS, seed=1), config)
    return VirtualChip(manifest, AnalyticModel(), FabricationConfig(seed=1))


def microscope_for(chip: VirtualChip, size: int, threads: int) -> VirtualMicroscope:
    config = MicroscopeConfig(
        optics=MicroscopeOptics(um_per_px=UM_PER_PX),
        sensor=SensorConfig(width_px=size, height_px=size),
    )
    return VirtualMicroscope(chip, config, threads=threads)


def time_frames(chip: VirtualChip, size: int, threads: int, repeats: int) -> dict[str, float]:
    """cold / new band / next frame at one sensor size and thread count."""
    m = chip.manifest
    centre_u = float(m.arrays.origin_x_um[0]) + COLS * m.pad_pitch_um / 2
    centre_v = float(m.arrays.origin_y_um[0]) + ROWS * m.pad_pitch_um / 2
    start = time.perf_counter()
    mic = microscope_for(chip, size, threads)
    with mic:
        _ = mic.fine_spectra
        warm = mic.chip_to_stage(centre_u - 7.0, centre_v - 7.0)
        mic.render(
            "sample",
            OpticalState(600.0, BandwidthMode.NARROW, 0.0, (*warm, 0.0)),
            exposure_s=EXPOSURE_S, gain_db=0.0, bit_depth=12, frame=0,
        )  # fmt: skip
        setup_s = time.perf_counter() - start

        def stage(r: int) -> tuple[float, float, float]:
            # A fresh position per repeat (0.37 µm steps): the view cache never hits.
            return (*mic.chip_to_stage(centre_u + 0.37 * r, centre_v - 0.23 * r), 0.0)

        def render(state: OpticalState, frame: int) -> object:
            return mic.render(
                "sample", state, exposure_s=EXPOSURE_S, gain_db=0.0, bit_depth=12, frame=frame
            )

        cold = median_ms(
            lambda r: render(OpticalState(550.0, BandwidthMode.NARROW, 0.0, stage(r)), 0), repeats
        )
        fixed = stage(repeats)
        render(OpticalState(550.0, BandwidthMode.NARROW, 0.0, fixed), 0)  # geometry built
        new_band = median_ms(
            lambda r: render(OpticalState(460.0 + 10 * r, BandwidthMode.NARROW, 0.0, fixed), 0),
            repeats,
        )
        same = OpticalState(700.0, BandwidthMode.NARROW, 0.0, fixed)
        render(same, 0)
        next_frame = median_ms(lambda r: render(same, 1 + r), repeats)
    return {
        "setup_s": round(setup_s, 2),
        "cold_ms": cold,
        "new_band_ms": new_band,
        "next_frame_ms": next_frame,
    }


def time_grabs(chip: VirtualChip, repeats: int, pylon: bool) -> dict[str, float]:
    """ms per grab of 4 frames at 512x512: SimCamera, and the Basler driver on pylon's emulation."""
    out: dict[str, float] = {}
    with microscope_for(chip, 512, 2) as mic:
        m = chip.manifest
        centre = mic.chip_to_stage(
            float(m.arrays.origin_x_um[0]) + COLS * m.pad_pitch_um / 2,
            float(m.arrays.origin_y_um[0]) + ROWS * m.pad_pitch_um / 2,
        )
        states = FixedState(OpticalState(550.0, BandwidthMode.NARROW, 0.0, (*centre, 0.0)))
        camera = SimCamera(mic, states, "sample", time_scale=0.0)
        camera.exposure_s = EXPOSURE_S
        camera.grab(4)  # geometry, transmission map and noise table
        out["simcamera_grab4_ms"] = median_ms(lambda r: camera.grab(4), repeats)
        if not pylon:
            return out
        from instruments.basler.pylon_camera import BaslerCamera
        from simulators.devices.pylon_emulation import (
            EMULATED_DEVICE_CLASS,
            emulated_serial,
            enable_pylon_emulation,
        )

        enable_pylon_emulation(1)
        with (
            tempfile.TemporaryDirectory() as folder,
            BaslerCamera.open(
                emulated_serial(0),
                timeout_s=0,
                device_class=EMULATED_DEVICE_CLASS,
                readout_margin_s=0.5,
            ) as basler,
        ):
            basler.roi = (0, 0, 512, 512)
            basler.bit_depth = 12
            basler.exposure_s = 1e-3  # the emulation waits out the exposure it is set to
            feed = PylonImageFeed(basler, mic, states, "sample", Path(folder))
            feed.grab(4)
            out["pylon_feed_grab4_ms"] = median_ms(lambda r: feed.grab(4), repeats)
            out["pylon_feed_exposure_ms"] = 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-pylon", action="store_true", help="Leave out the pypylon path.")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    chip = make_chip()
    frames = {
        f"{size}x{size}": {
            f"threads_{threads}": time_frames(chip, size, threads, args.repeats)
            for threads in (2, 1)
        }
        for size in (2048, 512)
    }
    print(
        json.dumps(
            {
                "array": f"{ROWS}x{COLS} pads of {chip.manifest.pad_size_um:g} µm",
                "um_per_px": UM_PER_PX,
                "exposure_s": EXPOSURE_S,
                "bit_depth": 12,
                "repeats": args.repeats,
                "frames": frames,
                "grab_512x512_threads_2": time_grabs(chip, args.repeats, not args.skip_pylon),
                "target_2048_frame_ms": 100,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()

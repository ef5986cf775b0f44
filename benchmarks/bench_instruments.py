"""Instruments benchmark: prints one JSON object with the link and device-timing figures.

* query round trips per second for each serial driver, in-process and over 127.0.0.1 TCP
  (pyvisa-py), i.e. the cost of the link, not of the device;
* one scan step with the emulators' device timing at time_scale 1 (the reference's figures:
  filter settle, 430 deg/s rotation, 5 mm/s stage): retune + wait ready, a 90 deg rotation,
  a 1 mm stage move + wait idle. These are the emulator's modelled timings, not hardware;
* Basler (pylon emulation): 16-bit frames per second through grab() with float64 averaging.

Usage: python benchmarks/bench_instruments.py [--queries N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

os.environ.setdefault("PYLON_CAMEMU", "2")

from instruments.asi import MS2000
from instruments.basler import BaslerCamera
from instruments.thorlabs import ELL14, Kurios
from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.ell14 import Ell14Emulator
from simulators.devices.emulator import Emulator
from simulators.devices.kurios import KuriosEmulator
from simulators.devices.ms2000 import Ms2000Emulator
from simulators.devices.tcp_server import EmulatorServer

DEVICES: dict[str, tuple[type[Any], Callable[[float], Emulator], Callable[[Any], object]]] = {
    "kurios": (Kurios, lambda s: KuriosEmulator(time_scale=s), lambda d: d.wavelength_nm),
    "ell14": (ELL14, lambda s: Ell14Emulator(time_scale=s), lambda d: d.position_pulses),
    "ms2000": (MS2000, lambda s: Ms2000Emulator(time_scale=s), lambda d: d.position_um),
}


def in_process(cls: type[Any], emulator: Emulator, **kwargs: Any) -> Any:
    adapter = EmulatorAdapter(
        emulator, write_termination=cls.WRITE_TERMINATION, read_termination=cls.READ_TERMINATION
    )
    return cls(adapter, **kwargs)


def rate(query: Callable[[], object], n: int) -> float:
    query()
    t = time.perf_counter()
    for _ in range(n):
        query()
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    }

    for name, (cls, make, query) in DEVICES.items():
        local = in_process(cls, make(1.0))
        local.initialize()
        out[f"{name}_queries_per_s_in_process"] = round(rate(partial(query, local), args.queries))
        local.adapter.close()
        with EmulatorServer(make(1.0)) as server:
            remote = cls(server.resource_name, visa_library="@py")
            remote.initialize()
            out[f"{name}_queries_per_s_tcp"] = round(rate(partial(query, remote), args.queries))
            remote.adapter.close()

    filt = in_process(Kurios, KuriosEmulator(time_scale=1.0))
    filt.initialize()
    rotator = in_process(ELL14, Ell14Emulator(time_scale=1.0))
    rotator.initialize()
    stage = in_process(MS2000, Ms2000Emulator(time_scale=1.0))
    stage.initialize()
    t = time.perf_counter()
    filt.wavelength_nm = 600.0
    filt.wait_until_ready(timeout_s=5.0)
    out["filter_retune_ready_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    rotator.move_to(90.0)
    out["rotator_90deg_move_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    stage.move_to(1000.0, 0.0)
    stage.wait_until_idle(timeout_s=5.0)
    out["stage_1mm_move_s"] = round(time.perf_counter() - t, 4)

    with BaslerCamera.open("0815-0000") as camera:
        camera.bit_depth = 16
        camera.exposure_s = 0.001
        *_, w, h = camera.roi
        camera.grab(1)
        frames = 20
        t = time.perf_counter()
        camera.grab(frames)
        out["basler_emulated_frames_per_s"] = round(frames / (time.perf_counter() - t), 1)
        out["basler_frame_size"] = f"{w}x{h}"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

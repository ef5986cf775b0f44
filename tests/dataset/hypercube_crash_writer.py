"""A scan stand-in for the hypercube crash tests: writes every dark and band of a small cube in a
fixed order with deterministic data, resuming whatever the file already holds, so a test can
SIGKILL it anywhere and recompute what each completed item must hold.

Usage: python hypercube_crash_writer.py PATH [--delay-s S] [--die-at-mark N]
Prints "ready" once imported (the test times its kill from there) and "done" at the end.
``--die-at-mark N`` kills the process itself just before the N-th completed flag (counting from
1) is set: a crash with the band's data on disk and its flag still 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataset.hypercube_file import HypercubeLayout, HypercubeWriter

SIDE = 64
LAYOUT = HypercubeLayout.build(("x", "y"), 500.0 + 20.0 * np.arange(12), SIDE, SIDE, [0.01, 0.1])
ATTRS: dict[str, Any] = {
    "chip_id": "crash",
    "manifest_sha256": "cc" * 32,
    "array_id": 2,
    "tile_row": 1,
    "tile_col": 3,
    "x_um": 1250.0,
    "y_um": -300.0,
    "pixel_size_um": 3.45,
    "instruments": {"camera": "sim"},
    "config": {"frames": 4},
}
# (kind, key) in acquisition order: darks first, then polarization-major bands.
ORDER: list[tuple[str, Any]] = [
    *(("dark", e) for e in LAYOUT.dark_exposures_s),
    *(("reference_dark", e) for e in LAYOUT.reference_dark_exposures_s),
    *(("signal", (p, float(w))) for p in LAYOUT.polarizations for w in LAYOUT.wavelength_nm),
]


def image(i: int) -> NDArray[np.float32]:
    """The image of item ``i`` of ORDER, the same in every process."""
    rng = np.random.default_rng(1000 + i)
    return (rng.random((SIDE, SIDE)) * 4000 + i).astype(np.float32)


def values(i: int) -> dict[str, Any]:
    """The per-item values of item ``i`` of ORDER."""
    return {
        "reference": 1000.0 + i,
        "reference_exposure_s": 0.005,
        "exposure_s": 0.01 * (1 + i % 3),
        "frames": 1 + i % 4,
        "timestamp_s": 1.7e9 + i,
        "flags": i % 3,
    }


def write_item(writer: HypercubeWriter, i: int) -> None:
    kind, key = ORDER[i]
    v = values(i)
    if kind == "dark":
        writer.write_dark(key, image(i), frames=v["frames"], timestamp_s=v["timestamp_s"])
    elif kind == "reference_dark":
        writer.write_reference_dark(
            key, v["reference"], frames=v["frames"], timestamp_s=v["timestamp_s"]
        )
    else:
        writer.write_band(kind, key[0], key[1], image(i), **v)


def is_completed(writer: HypercubeWriter, i: int) -> bool:
    kind, key = ORDER[i]
    if kind == "dark":
        return bool(writer.completed("dark")[LAYOUT.dark_exposures_s.index(key)])
    if kind == "reference_dark":
        return bool(
            writer.completed("reference_dark")[LAYOUT.reference_dark_exposures_s.index(key)]
        )
    return bool(writer.completed(kind)[LAYOUT.band_index(*key)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--die-at-mark", type=int, default=0)
    args = parser.parse_args()
    if args.die_at_mark:
        marks = 0
        original = HypercubeWriter._mark

        def dying_mark(self: HypercubeWriter, f: Any, name: str, index: Any, value: int) -> None:
            nonlocal marks
            if value == 1:
                marks += 1
                if marks == args.die_at_mark:
                    os.kill(os.getpid(), signal.SIGKILL)
            original(self, f, name, index, value)

        HypercubeWriter._mark = dying_mark  # type: ignore[method-assign]
    print("ready", flush=True)
    if args.path.exists():
        writer = HypercubeWriter.open_existing(args.path, LAYOUT, ATTRS)
    else:
        writer = HypercubeWriter.create(args.path, LAYOUT, ATTRS)
    with writer:
        for i in range(len(ORDER)):
            if not is_completed(writer, i):
                write_item(writer, i)
                time.sleep(args.delay_s)
    print("done", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

"""A small, fast simulated scan for the runner's tests: a chip whose companion array (2x2 pads)
fits one 40 µm field, 5 bands, x and y, a 160x160 px camera, emulators at 1/1000 of real time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from acquisition.bench import Bench
from dataset.hypercube_file import read_hypercube
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, write_manifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BANDS_NM = [450.0, 520.0, 590.0, 660.0, 730.0]
SCAN_TABLES = """
[optics]
um_per_px = 0.25
width_px = 160
height_px = 160

[scan]
bands_nm = [450.0, 520.0, 590.0, 660.0, 730.0]
frames = 2
reference_frames = 2
dark_frames = 2
{scan}
[exposure]
{exposure}

[alignment]
automatic = true

[runner]
step_backoff_s = 0.0
lamp_poll_s = 0.05
lamp_max_wait_s = {lamp_max_wait_s}

[simulation.microscope]
camera_feed = "direct"
"""


def small_manifest() -> ChipManifest:
    config = ChipConfig(thickness_nm=500, arrays=1, rows=4, cols=4, replicas=2, companion_size=2)
    return plan_chip(generate(24, seed=5), config)


def write_chip(folder: Path) -> Path:
    path = folder / "chip.h5"
    write_manifest(path, small_manifest())
    return path


#: Per-frame grab timeout beyond the exposure on the test benches: far more than a frame takes
#: on a busy machine (the shipped bench's default is 1 s), so no grab that must succeed times out.
READOUT_MARGIN = "bit_depth = 16\nreadout_margin_s = 10.0\n"


def bench_config(
    folder: Path,
    *,
    exposure: str = "",
    lamp_max_wait_s: float = 5.0,
    extra: str = "",
    scan: str = "",
) -> Path:
    """configs/sim-bench.toml without its scan tables, plus the small scan's (``scan``: more
    ``[scan]`` keys)."""
    text = (CONFIGS / "sim-bench.toml").read_text()
    text = text.split("# --- the scan")[0].replace("time_scale = 1.0 ", "time_scale = 0.001")
    assert text.count("bit_depth = 16\n") == 2  # both cameras
    text = text.replace("bit_depth = 16\n", READOUT_MARGIN)
    path = folder / "bench.toml"
    path.write_text(
        text
        + SCAN_TABLES.format(exposure=exposure, lamp_max_wait_s=lamp_max_wait_s, scan=scan)
        + extra
    )
    return path


def hypercube_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.h5"))


def data_of(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Every variable of a hypercube except the wall-clock timestamps, as numpy arrays."""
    with read_hypercube(path, mask_incomplete=False) as ds:
        return {
            str(name): np.asarray(ds[name].values)
            for name in ds.data_vars
            if not str(name).endswith("timestamp_s")
        }


def same_data(a: Path, b: Path) -> list[str]:
    """Names of the variables that differ between two hypercubes (NaN equals NaN)."""
    da, db = data_of(a), data_of(b)
    return [
        k
        for k in sorted(da)
        if da[k].shape != db[k].shape
        or not np.array_equal(da[k], db[k], equal_nan=da[k].dtype.kind == "f")
    ]


def open_tile(folder: Path) -> xr.Dataset:
    return read_hypercube(folder / "A0C_r0c0.h5")


class FilterProxy:
    """The bench's filter, with a hook on every retune (fault injection in tests)."""

    def __init__(self, bench: Bench, on_retune: Any) -> None:
        self._inner = bench.filter
        self._on_retune = on_retune

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "wavelength_nm":
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    @property
    def wavelength_nm(self) -> float:
        return float(self._inner.wavelength_nm)

    @wavelength_nm.setter
    def wavelength_nm(self, value: float) -> None:
        self._on_retune(value)
        self._inner.wavelength_nm = value


class CameraProxy:
    """The bench's sample camera, with a hook before every grab."""

    def __init__(self, inner: Any, before_grab: Any) -> None:
        self._inner = inner
        self._before = before_grab
        self.grabs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def exposure_s(self) -> float:
        return float(self._inner.exposure_s)

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        self._inner.exposure_s = value

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return tuple(self._inner.roi)  # type: ignore[return-value]

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None:
        self._inner.roi = value

    def grab(self, frames: int, *, software_trigger: bool = True) -> Any:
        self.grabs += 1
        self._before(self.grabs)
        return self._inner.grab(frames, software_trigger=software_trigger)

"""The hypercube file (contract 3): xarray-readable layout, band-by-band writes that only touch raw
data, SIGKILL at random moments and resume, re-takes, flats, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr

from dataset.hypercube_attrs import HypercubeAttrs, HypercubeAttrsError
from dataset.hypercube_file import (
    HypercubeLayout,
    HypercubeWriter,
    read_flat,
    read_hypercube,
    read_hypercube_attrs,
)
from dataset.quality import BandFlag

HELPER = Path(__file__).with_name("hypercube_crash_writer.py")


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hypercube_crash_writer", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash = _load_helper()
LAYOUT: HypercubeLayout = crash.LAYOUT
ATTRS: dict[str, Any] = crash.ATTRS
WL = [float(w) for w in LAYOUT.wavelength_nm]


def band(writer: HypercubeWriter, pol: str, wl: float, fill: float, **over: Any) -> None:
    kw: dict[str, Any] = {
        "reference": 900.0 + fill,
        "reference_exposure_s": 0.005,
        "exposure_s": 0.02,
        "frames": 4,
        "timestamp_s": 1.7e9 + fill,
    }
    kw.update(over)
    section = kw.pop("section", "signal")
    image = kw.pop("image", np.full((crash.SIDE, crash.SIDE), fill))
    writer.write_band(section, pol, wl, image, **kw)


def write_everything(path: Path) -> None:
    with HypercubeWriter.create(path, LAYOUT, ATTRS) as writer:
        for i in range(len(crash.ORDER)):
            crash.write_item(writer, i)


def raw_ranges(path: Path, touched: dict[str, list[int]]) -> list[tuple[int, int]]:
    """Byte ranges in the file of the given items (flat index over the dims before y, x) of each
    dataset's contiguous storage."""
    out = []
    with h5py.File(path, "r") as f:
        for name, flat_indices in touched.items():
            ds = f[name]
            per = int(np.prod(ds.shape[-2:])) if ds.ndim >= 3 else 1  # an image or a value
            size = per * ds.dtype.itemsize
            for i in flat_indices:
                start = ds.id.get_offset() + i * size
                out.append((start, start + size))
    return out


def changed_bytes(before: bytes, after: bytes) -> np.ndarray:
    assert len(before) == len(after), "the file changed size"
    a, b = np.frombuffer(before, np.uint8), np.frombuffer(after, np.uint8)
    return np.flatnonzero(a != b)


def test_round_trip_with_xarray(tmp_path: Path) -> None:
    path = tmp_path / "tile.nc"
    write_everything(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tile.nc"]  # no temporary left behind
    for engine in ("h5netcdf", None):  # None: xarray picks (h5netcdf here, netCDF4 if installed)
        with xr.open_dataset(path, engine=engine) as ds:
            assert dict(ds.sizes) == {
                "polarization": 2,
                "wavelength": 12,
                "y": 64,
                "x": 64,
                "dark_exposure_s": 2,
                "reference_dark_exposure_s": 2,
            }
            assert list(ds.polarization.values) == ["x", "y"]
            np.testing.assert_array_equal(ds.wavelength.values, LAYOUT.wavelength_nm)
            assert ds.wavelength.dtype == np.float64 and ds.wavelength.attrs["units"] == "nm"
            assert ds.signal.dtype == np.float32 and ds.signal.dims[2:] == ("y", "x")
            assert ds.signal_frames.dtype == np.int32 and ds.signal_band_flags.dtype == np.uint8
            assert ds.signal_exposure_s.dtype == ds.signal_timestamp_s.dtype == np.float64
            assert ds.signal_completed.values.all() and ds.dark_completed.values.all()
            for i, (kind, key) in enumerate(crash.ORDER):
                v = crash.values(i)
                if kind == "dark":
                    sel = ds.sel(dark_exposure_s=key)
                    np.testing.assert_array_equal(sel.dark.values, crash.image(i))
                    assert int(sel.dark_frames) == v["frames"]
                elif kind == "reference_dark":
                    sel = ds.sel(reference_dark_exposure_s=key)
                    assert float(sel.reference_dark) == v["reference"]
                else:
                    sel = ds.sel(polarization=key[0], wavelength=key[1])
                    np.testing.assert_array_equal(sel.signal.values, crash.image(i))
                    assert float(sel.signal_reference) == v["reference"]
                    assert float(sel.signal_exposure_s) == v["exposure_s"]
                    assert float(sel.signal_timestamp_s) == v["timestamp_s"]
                    assert int(sel.signal_band_flags) == v["flags"]
            assert ds.attrs["schema"] == "metascan.hypercube" and ds.attrs["role"] == "tile"
            assert ds.attrs["x_um"] == 1250.0 and ds.attrs["tile_col"] == 3
            assert json.loads(ds.attrs["instruments"]) == {"camera": "sim"}
    with read_hypercube(path) as ds:
        assert ds.attrs["config"] == {"frames": 4} and ds.attrs["chip_id"] == "crash"
        assert ds.signal.chunks is not None and ds.signal.chunks[1] == (1,) * 12  # one band a chunk
        np.testing.assert_array_equal(ds.signal[1, 3].values, crash.image(4 + 12 + 3))
    with h5py.File(path) as f:  # every variable contiguous and allocated up front
        for name, obj in f.items():
            phony = b"not a netCDF variable" in bytes(obj.attrs.get("NAME", b""))  # y, x dims
            if not phony:
                assert obj.chunks is None and obj.id.get_offset() is not None, name


@pytest.mark.parametrize("keep_open", [False, True])
def test_band_write_touches_only_its_raw_data(tmp_path: Path, keep_open: bool) -> None:
    path = tmp_path / "tile.nc"
    HypercubeWriter.create(path, LAYOUT, ATTRS).close()
    before = path.read_bytes()
    HypercubeWriter.open_existing(path, LAYOUT).close()
    assert path.read_bytes() == before  # reopening rewrites nothing
    with HypercubeWriter.open_existing(path, LAYOUT, keep_open=keep_open) as writer:
        band(writer, "y", WL[5], 7.0, flags=BandFlag.SATURATED)
        writer.write_dark(0.1, np.ones((64, 64)), frames=2, timestamp_s=1.0)
    after = path.read_bytes()
    k = 12 + 5  # flat index of (y, WL[5])
    suffixes = ("reference", "reference_exposure_s", "exposure_s", "frames", "timestamp_s")
    allowed = raw_ranges(
        path,
        {
            "signal": [k],
            **{f"signal_{s}": [k] for s in (*suffixes, "band_flags", "completed")},
            "dark": [1],
            "dark_frames": [1],
            "dark_timestamp_s": [1],
            "dark_completed": [1],
        },
    )
    diff = changed_bytes(before, after)
    assert diff.size > 4000  # the image went in
    inside = np.zeros(diff.size, dtype=bool)
    for lo, hi in allowed:
        inside |= (diff >= lo) & (diff < hi)
    assert inside.all(), f"bytes outside the raw data changed: {diff[~inside][:10]}"


def test_partial_file_reads_nan_and_flags_zero(tmp_path: Path) -> None:
    path = tmp_path / "tile.nc"
    with HypercubeWriter.create(path, LAYOUT, ATTRS) as writer:
        band(writer, "x", WL[0], 1.0)
        band(writer, "y", WL[11], 2.0)
        done = writer.completed("signal")
    assert done.sum() == 2 and done[0, 0] and done[1, 11]
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        completed = ds.signal_completed.values.astype(bool)
        np.testing.assert_array_equal(completed, done)
        assert np.isnan(ds.signal.values[~completed]).all()
        assert not np.isnan(ds.signal.values[completed]).any()
        assert np.isnan(ds.signal_exposure_s.values[~completed]).all()
        assert (ds.signal_frames.values[~completed] == 0).all()
        assert np.isnan(ds.dark.values).all() and not ds.dark_completed.values.any()
    with HypercubeWriter.open_existing(path, LAYOUT) as writer:
        np.testing.assert_array_equal(writer.completed(), done)
        assert writer.progress() == "signal 2/24, dark 0/2, reference_dark 0/2"


def test_completed_band_is_retaken_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "tile.nc"
    with HypercubeWriter.create(path, LAYOUT, ATTRS) as writer:
        band(writer, "x", WL[2], 1.0)
        writer.write_dark(0.01, np.zeros((64, 64)), frames=1, timestamp_s=1.0)
        with pytest.raises(ValueError, match=r"already completed; pass retake=True") as err:
            band(writer, "x", WL[2], 5.0)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="already completed"):
            writer.write_dark(0.01, np.ones((64, 64)), frames=1, timestamp_s=2.0)
        band(writer, "x", WL[2], 5.0, flags=BandFlag.LAMP_INTERRUPTED, retake=True)
        writer.write_dark(0.01, np.ones((64, 64)), frames=1, timestamp_s=2.0, retake=True)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        sel = ds.sel(polarization="x", wavelength=WL[2])
        assert (sel.signal.values == 5.0).all() and int(sel.signal_completed) == 1
        assert BandFlag(int(sel.signal_band_flags)) == BandFlag.LAMP_INTERRUPTED
        assert float(sel.signal_reference) == 905.0
        assert (ds.dark.sel(dark_exposure_s=0.01).values == 1.0).all()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"image": np.zeros((64, 63))}, r"image shape \(64, 63\) must be \(64, 64\)"),
        ({"image": np.full((64, 64), np.nan)}, "NaN/inf"),
        ({"wl": 555.0}, "wavelength_nm=555.0 is not one of"),
        ({"pol": "z"}, "polarization='z' is not in this hypercube"),
        ({"exposure_s": -0.01}, "exposure_s=-0.01 must be a finite positive"),
        ({"reference_exposure_s": 0.0}, "reference_exposure_s=0.0 must be a finite positive"),
        ({"reference": float("inf")}, "reference=inf must be a finite"),
        ({"frames": 0}, "frames=0 must be a positive integer"),
        ({"flags": 8}, r"flags=8 must be BandFlag bits \(0..7\)"),
        ({"section": "flat"}, r"section='flat' is not one of \('signal',\)"),
    ],
)
def test_bad_band_input_is_refused_before_writing(
    tmp_path: Path, over: dict[str, Any], message: str
) -> None:
    path = tmp_path / "tile.nc"
    HypercubeWriter.create(path, LAYOUT, ATTRS).close()
    before = path.read_bytes()
    pol, wl = over.pop("pol", "x"), over.pop("wl", WL[0])
    with HypercubeWriter.open_existing(path, LAYOUT) as writer:
        with pytest.raises(ValueError, match=message) as err:
            band(writer, pol, wl, 1.0, **over)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match=r"exposure_s=0.5 is not one of"):
            writer.write_dark(0.5, np.zeros((64, 64)), frames=1, timestamp_s=1.0)
        assert not writer.completed().any()
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"polarizations": ("x", "x")}, "polarizations"),
        ({"wavelength_nm": [500.0, 500.0]}, "strictly increasing"),
        ({"wavelength_nm": []}, "non-empty"),
        ({"height_px": 0}, "height_px=0 must be a positive integer"),
        ({"dark_exposures_s": [0.0, 0.1]}, "dark_exposures_s"),
        ({"dark_exposures_s": []}, "one or more"),
        ({"sections": ("flat",)}, "with 'signal'"),
        ({"sections": ("signal", "bright")}, "sections"),
    ],
)
def test_bad_layout_is_refused(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "polarizations": ("x", "y"),
        "wavelength_nm": [500.0, 520.0],
        "height_px": 8,
        "width_px": 8,
        "dark_exposures_s": [0.1],
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        HypercubeLayout.build(**args)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chip_id": None}, r"\['chip_id'\] are required"),
        ({"tile_row": None}, r"\['tile_row'\] are required for role 'tile'"),
        ({"pixel_size_um": -1.0}, "pixel_size_um=-1.0 must be positive"),
        ({"x_um": float("nan")}, "x_um=nan must be a finite number"),
        ({"config": "frames=4"}, "config='frames=4' must be a mapping"),
        ({"schema": "mine"}, r"\['schema'\] are reserved"),
        ({"_private": 1}, "must be a non-empty string not starting '_'"),
        ({"flat_file": "/abs/flat.nc"}, "must be a path relative"),
        ({"role": "dark"}, r"role='dark' must be one of"),
    ],
)
def test_bad_attributes_are_refused_before_creating(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    attrs = {**ATTRS, **change}
    attrs = {k: v for k, v in attrs.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        HypercubeWriter.create(tmp_path / "tile.nc", LAYOUT, attrs)
    assert list(tmp_path.iterdir()) == []


def test_create_refuses_existing_file_and_open_existing_checks_it(tmp_path: Path) -> None:
    path = tmp_path / "tile.nc"
    with HypercubeWriter.create(path, LAYOUT, ATTRS) as writer:
        band(writer, "x", WL[0], 1.0)
    with pytest.raises(FileExistsError, match="exists; resume it or pass overwrite"):
        HypercubeWriter.create(path, LAYOUT, ATTRS)
    other = HypercubeLayout.build(("x", "y"), LAYOUT.wavelength_nm + 1, 64, 64, [0.01, 0.1])
    with pytest.raises(ValueError, match=r"layout differs from the scan's: file has wavelengths"):
        HypercubeWriter.open_existing(path, other)
    smaller = HypercubeLayout.build(("x", "y"), LAYOUT.wavelength_nm, 32, 64, [0.01, 0.1])
    with pytest.raises(ValueError, match=r"image size 64x64 != 32x64 px"):
        HypercubeWriter.open_existing(path, smaller)
    with pytest.raises(ValueError, match=r"tile_row=1 in the file, 2 expected"):
        HypercubeWriter.open_existing(path, LAYOUT, {**ATTRS, "tile_row": 2})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HypercubeWriter.open_existing(tmp_path / "missing.nc", LAYOUT)
    (tmp_path / "junk.nc").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="is not a readable HDF5 hypercube"):
        read_hypercube(tmp_path / "junk.nc")
    with h5py.File(tmp_path / "pairs.h5", "w") as f:
        f.attrs["schema"] = "metascan.pairs"
    with pytest.raises(ValueError, match="not a hypercube"):
        HypercubeWriter.open_existing(tmp_path / "pairs.h5", LAYOUT)
    with HypercubeWriter.create(path, LAYOUT, ATTRS, overwrite=True) as writer:
        assert not writer.completed().any()


def test_reader_in_another_process_does_not_block_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "tile.nc"
    reader = "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); input()"
    with HypercubeWriter.create(path, LAYOUT, ATTRS) as writer:
        proc = subprocess.Popen(
            [sys.executable, "-c", reader, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        try:
            band(writer, "x", WL[1], 3.0)  # HDF5 file locking would refuse this open
        finally:
            proc.communicate("\n", timeout=30)
    with h5py.File(path, "r") as f:
        assert (f["signal"][0, 1] == 3.0).all() and f["signal_completed"][0, 1] == 1


def test_flat_in_the_tile_or_in_a_linked_flat_file(tmp_path: Path) -> None:
    with_flat = HypercubeLayout.build(
        ("x",), [500.0, 520.0], 8, 8, [0.1], sections=("signal", "flat")
    )
    own = tmp_path / "own.nc"
    with HypercubeWriter.create(own, with_flat, ATTRS) as writer:
        band(writer, "x", 500.0, 1.0, section="flat", image=np.full((8, 8), 9.0))
        band(writer, "x", 500.0, 1.0, image=np.full((8, 8), 4.0))
    with read_flat(own) as flat:
        assert float(flat.flat.sel(polarization="x", wavelength=500.0).mean()) == 9.0
        assert np.isnan(flat.flat.sel(wavelength=520.0).values).all()
        assert "signal" not in flat and "dark" in flat and flat.attrs["flat_source"] == str(own)

    plain = HypercubeLayout.build(("x",), [500.0, 520.0], 8, 8, [0.1])
    (tmp_path / "flats").mkdir()
    flat_path = tmp_path / "flats" / "flat.nc"
    flat_attrs = {k: v for k, v in ATTRS.items() if k not in ("array_id", "tile_row", "tile_col")}
    with HypercubeWriter.create(flat_path, plain, {**flat_attrs, "role": "flat"}) as writer:
        band(writer, "x", 520.0, 2.0, image=np.full((8, 8), 7.0), exposure_s=0.03)
    tile = tmp_path / "tile.nc"
    HypercubeWriter.create(tile, plain, {**ATTRS, "flat_file": "flats/flat.nc"}).close()
    with read_flat(tile) as flat:
        assert float(flat.flat.sel(wavelength=520.0).mean()) == 7.0
        assert float(flat.flat_exposure_s.sel(polarization="x", wavelength=520.0)) == 0.03
        assert flat.attrs["flat_source"] == str(flat_path)
    with pytest.raises(ValueError, match="flat_file links a tile without a flat section"):
        HypercubeWriter.create(tmp_path / "x.nc", with_flat, {**ATTRS, "flat_file": "f.nc"})
    with pytest.raises(ValueError, match="no flat section and no flat_file"):
        read_flat(flat_path)
    bad = tmp_path / "bad.nc"
    HypercubeWriter.create(bad, plain, {**ATTRS, "flat_file": "tile.nc"}).close()
    with pytest.raises(ValueError, match="has role 'tile'"):
        read_flat(bad)


def _start(path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _check_after_crash(path: Path) -> int:
    """Items completed so far (a prefix of ORDER); each holds exactly what was written, every
    item after the one in flight is still NaN/0, and read_hypercube masks the one in flight."""
    if not path.exists():
        return 0
    n = len(crash.ORDER)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        done = []
        for i, (kind, key) in enumerate(crash.ORDER):
            if kind == "dark":
                sel, data = ds.sel(dark_exposure_s=key), "dark"
            elif kind == "reference_dark":
                sel, data = ds.sel(reference_dark_exposure_s=key), "reference_dark"
            else:
                sel, data = ds.sel(polarization=key[0], wavelength=key[1]), "signal"
            finished = bool(sel[f"{data}_completed"])
            done.append(finished)
            values = sel[data].values
            if finished:
                expected = (
                    crash.values(i)["reference"] if kind == "reference_dark" else crash.image(i)
                )
                np.testing.assert_array_equal(values, expected, err_msg=str(crash.ORDER[i]))
                assert int(sel[f"{data}_frames"]) == crash.values(i)["frames"]
                assert float(sel[f"{data}_timestamp_s"]) == crash.values(i)["timestamp_s"]
            elif i > sum(done):  # beyond the item in flight: untouched
                assert np.isnan(values).all() and int(sel[f"{data}_frames"]) == 0
        k = sum(done)
        assert done == [True] * k + [False] * (n - k), "completed items are not a prefix"
    with read_hypercube(path) as ds:
        assert int(np.isfinite(ds.signal.values).all(axis=(2, 3)).sum()) == max(0, k - 4)
    return k


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    reference = tmp_path / "uninterrupted.nc"
    write_everything(reference)
    path = tmp_path / "tile.nc"
    # A crash with the 7th item's data on disk and its flag not yet set.
    proc = _start(path, "--die-at-mark", "7")
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with xr.open_dataset(path, engine="h5netcdf") as ds:  # the in-flight band's data went in...
        np.testing.assert_array_equal(ds.signal[0, 2].values, crash.image(6))
        assert int(ds.signal_completed[0, 2]) == 0
    assert _check_after_crash(path) == 6
    with read_hypercube(path) as ds:  # ...and the reader hides it
        assert np.isnan(ds.signal[0, 2].values).all()
        assert np.isnan(ds.signal_timestamp_s[0, 2].values)
    with read_hypercube(path, mask_incomplete=False) as ds:
        np.testing.assert_array_equal(ds.signal[0, 2].values, crash.image(6))

    rng = np.random.default_rng(7)
    progress = [6]
    for delay in rng.uniform(0.0, 0.15, size=5):
        proc = _start(path, "--delay-s", "0.02")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        progress.append(_check_after_crash(path))
    assert progress == sorted(progress)  # a kill never loses completed work
    assert progress[1] < len(crash.ORDER)  # the first random kill landed mid-scan
    proc = _start(path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "done", err
    assert _check_after_crash(path) == len(crash.ORDER)
    with (
        xr.open_dataset(path, engine="h5netcdf") as resumed,
        xr.open_dataset(reference, engine="h5netcdf") as whole,
    ):
        xr.testing.assert_identical(resumed.load(), whole.load())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": None}, r"x.nc: hypercube attributes \['role'\] are required for role None"),
        ({"tile_col": "3"}, r"x.nc: attribute tile_col='3' must be a non-negative integer"),
        ({"pads": [1, -2]}, r"attribute pads=\[1, -2\] must be a list of non-negative integers"),
        ({"centre_chip_um": "[1.0]"}, r"centre_chip_um=\[1.0\] must be \[u, v\], two finite"),
        ({"instruments": '{"camera": 1}'}, r"instruments=\{'camera': 1\} must be a mapping"),
        ({"full_scale_dn": 0}, r"full_scale_dn=0 must be a positive integer"),
        (
            {"autoexposure": []},
            "attribute autoexposure is only for role 'flat', not for role 'tile'",
        ),
        ({"darks_from": ""}, "darks_from='' must be a path relative to this file's folder"),
    ],
)
def test_attribute_schema_refusals_name_the_file_key_and_what_it_must_be(
    change: dict[str, Any], message: str
) -> None:
    attrs = {k: v for k, v in {"role": "tile", **ATTRS, **change}.items() if v is not None}
    with pytest.raises(HypercubeAttrsError, match=message) as err:
        HypercubeAttrs.from_attrs(attrs, "x.nc")
    assert "\n" not in str(err.value)


def test_attribute_schema_order_types_and_darks_from(tmp_path: Path) -> None:
    attrs = HypercubeAttrs.from_attrs({**ATTRS, "role": "tile", "note": "kept"}, "x.nc")
    stored = attrs.to_attrs()
    assert "darks_from" not in stored  # absent: the file is byte-identical to one before it
    assert list(stored) == [
        "role", "chip_id", "manifest_sha256", "x_um", "y_um", "pixel_size_um", "instruments",
        "config", "array_id", "tile_row", "tile_col", "note",
    ]  # fmt: skip
    assert attrs.extra == {"note": "kept"} and type(stored["x_um"]) is float
    copied = HypercubeAttrs(**{**attrs.__dict__, "darks_from": "A0_r0c0.h5"})
    path = tmp_path / "tile.nc"
    HypercubeWriter.create(path, LAYOUT, copied.to_attrs()).close()
    with h5py.File(path) as f:
        assert list(f.attrs)[-2:] == ["darks_from", "note"]
    assert read_hypercube_attrs(path) == copied
    with read_hypercube(path) as ds:
        assert ds.attrs["darks_from"] == "A0_r0c0.h5" and ds.attrs["note"] == "kept"
    flat = {k: v for k, v in ATTRS.items() if k not in ("array_id", "tile_row", "tile_col")}
    with pytest.raises(
        HypercubeAttrsError, match="flat_file is only for role 'tile', not for role 'flat'"
    ):
        HypercubeAttrs.from_attrs({**flat, "role": "flat", "flat_file": "f.nc"}, "x.nc")

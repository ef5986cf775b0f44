"""The array-spectra file (contract 4): round trip, validation, merging arrays, versioning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr

from dataset.array_spectra_file import (
    SCHEMA_VERSION,
    ArraySpectra,
    read_array_spectra,
    write_array_spectra,
)
from dataset.quality import PadFlag
from layout.manifest import PadTable, Role

W = 7
WAVELENGTH_NM = np.linspace(450.0, 750.0, W)


def pads(array_id: int = 0, replica: int = 1, rows: int = 2, cols: int = 3) -> PadTable:
    """A manifest-like pad table for one array of rows x cols pads at a 20 um pitch."""
    row, col = np.divmod(np.arange(rows * cols), cols)
    n = row.size
    origin = 1000.0 * array_id + 300.0 * replica
    return PadTable(
        array_id=np.full(n, array_id, np.int32),
        replica=np.full(n, replica, np.int32),
        role=np.full(n, Role.DATASET, np.int8),
        row=row.astype(np.int32),
        col=col.astype(np.int32),
        x_um=origin + 20.0 * col,
        y_um=-500.0 + 20.0 * row,
        design_id=(10_000 * array_id + 100 + row * cols + col).astype(np.int64),
    )


def make(table: PadTable | None = None, seed: int = 0, **override: Any) -> ArraySpectra:
    table = table if table is not None else pads()
    n = len(table)
    rng = np.random.default_rng(seed)
    transmission = rng.uniform(0.05, 0.98, (n, 2, W))
    flags = np.zeros(n, np.uint16)
    flags[1] = PadFlag.MISSING  # not in any tile: no data at all
    transmission[1] = np.nan
    flags[2] = PadFlag.NON_UNIFORM | PadFlag.LOW_SIGNAL
    spread = rng.uniform(0.0, 0.02, (n, 2, W))
    spread[1] = np.nan
    counts = rng.integers(300, 400, (n, 2))
    counts[1] = 0
    fields: dict[str, Any] = {
        "transmission": transmission,
        "spread": spread,
        "pixel_count": counts,
        "flags": flags,
        "wavelength_nm": WAVELENGTH_NM,
        "chip_id": "CHIP-7",
        "manifest_sha256": "ab" * 32,
        "array_name": f"A{int(table.array_id[0])}R{int(table.replica[0])}",
        "hypercubes": [f"A{int(table.array_id[0])}R{int(table.replica[0])}.nc"],
        "registration_method": "fiducial-affine",
        "registration_residual_px": 0.21,
        "erosion_margin_um": 1.5,
        "flag_thresholds": {"non_uniform_spread": 0.05, "low_signal_fraction": 0.1},
        "reference_compensation": True,
        "provenance": {"extractor": "mean", "config": {"tile_overlap": 0.1, "bands": [1, 2]}},
    }
    fields.update(override)
    return ArraySpectra.from_pads(table, **fields)


def assert_same(a: ArraySpectra, b: ArraySpectra) -> None:
    for name in (
        "array_id",
        "replica",
        "role",
        "row",
        "col",
        "design_id",
        "x_um",
        "y_um",
        "transmission",
        "spread",
        "pixel_count",
        "flags",
        "wavelength_nm",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here
    for name in (
        "polarization",
        "chip_id",
        "array_name",
        "hypercubes",
        "registration_method",
        "registration_residual_px",
        "erosion_margin_um",
        "flag_thresholds",
        "reference_compensation",
    ):
        assert getattr(a, name) == getattr(b, name), name
        assert type(getattr(a, name)) is type(getattr(b, name)), name


def test_round_trip(tmp_path: Path) -> None:
    spectra = make()
    path = tmp_path / "A0R1.h5"
    write_array_spectra(path, spectra, {"seed": 3})
    back = read_array_spectra(path)
    assert_same(spectra, back)
    assert back.provenance == {**spectra.provenance, "seed": 3}
    assert np.isnan(back.transmission[1]).all() and back.flags[1] == PadFlag.MISSING
    assert back.reference_compensation is True and back.hypercubes == ("A0R1.nc",)
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "metascan.array_spectra"
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert f.attrs["array"] == "A0R1" and f.attrs["registration_residual_px"] == 0.21
        assert f["transmission"].compression == "gzip" and f["flags"].dtype == np.uint16
    assert [p.name for p in tmp_path.iterdir()] == ["A0R1.h5"]  # no temporary left behind
    # Reference compensation off survives too (a bool, not a truthy leftover).
    write_array_spectra(path, make(reference_compensation=False, hypercubes=[]))
    off = read_array_spectra(path)
    assert off.reference_compensation is False and off.hypercubes == ()


def test_one_polarization_and_the_manifest_join(tmp_path: Path) -> None:
    n = len(pads())
    spectra = make(
        polarization=("y",),
        transmission=np.full((n, 1, W), 0.5),
        spread=np.zeros((n, 1, W)),
        pixel_count=np.full((n, 1), 10),
        flags=np.zeros(n),
    )
    write_array_spectra(tmp_path / "y.h5", spectra)
    back = read_array_spectra(tmp_path / "y.h5")
    assert back.polarization == ("y",) and back.transmission.shape == (n, 1, W)
    table = back.pad_table()
    assert isinstance(table, PadTable)
    np.testing.assert_array_equal(table.design_id, pads().design_id)
    np.testing.assert_array_equal(table.x_um, pads().x_um)


def test_xarray_reads_the_coordinates(tmp_path: Path) -> None:
    write_array_spectra(tmp_path / "a.h5", make())
    with xr.open_dataset(tmp_path / "a.h5", engine="h5netcdf") as ds:
        assert ds["transmission"].dims == ("pad", "polarization", "wavelength_nm")
        assert list(ds["polarization"].values) == ["x", "y"]
        np.testing.assert_array_equal(ds["wavelength_nm"].values, WAVELENGTH_NM)
        x = ds["transmission"].sel(polarization="x").values
        np.testing.assert_array_equal(x, make().transmission[:, 0])


n_pads = len(pads())


def nan_flag(flag: int) -> dict[str, Any]:
    t = make().transmission.copy()
    t[3, 0, 2] = np.nan  # one band of a pad that is not MISSING
    flags = make().flags.copy()
    flags[3] = flag
    return {"transmission": t, "flags": flags}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"transmission": np.zeros((n_pads, W))}, r"transmission must be \(P=6, Q=2, W=7\)"),
        ({"spread": np.zeros((n_pads, 2, W + 1))}, r"spread must be \(P=6, Q=2, W=7\)"),
        ({"pixel_count": np.zeros((n_pads, 3))}, r"pixel_count must be \(P=6, Q=2\)"),
        ({"pixel_count": np.full((n_pads, 2), -1)}, "int32 >= 0"),
        ({"flags": np.zeros(n_pads - 1)}, r"flags must be \(6,\) uint16"),
        ({"flags": np.full(n_pads, 1 << 9)}, "unknown bits 0x200"),
        ({"flags": np.full(n_pads, -1)}, "fit uint16"),
        (nan_flag(PadFlag.NON_UNIFORM), "transmission of pad 3 .* flags \\(non_uniform\\) lack"),
        ({"transmission": np.full((n_pads, 2, W), np.inf)}, "transmission holds 84 inf"),
        ({"spread": np.full((n_pads, 2, W), -0.1)}, "spread must be >= 0"),
        ({"wavelength_nm": WAVELENGTH_NM[::-1]}, "strictly increasing"),
        ({"polarization": ("x", "x")}, "distinct names"),
        ({"polarization": ("x", "z")}, "distinct names"),
        ({"chip_id": ""}, "chip_id='' must be a non-empty string"),
        ({"erosion_margin_um": -1.0}, "erosion_margin_um=-1.0 must be a finite number >= 0"),
        ({"registration_residual_px": float("nan")}, "registration_residual_px=nan"),
        ({"flag_thresholds": {"a": True}}, "flag_thresholds"),
        ({"reference_compensation": 1}, "must be True or False"),
    ],
)
def test_bad_spectra_are_one_line_value_errors(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make(**override)
    assert "\n" not in str(info.value)


def test_nan_is_allowed_on_missing_pads_only() -> None:
    ok = make(**nan_flag(PadFlag.MISSING | PadFlag.NON_UNIFORM))
    assert np.isnan(ok.transmission[3, 0, 2])
    spread = make().spread.copy()
    spread[4, 1, 0] = np.nan
    with pytest.raises(ValueError, match="spread of pad 4"):
        make(spread=spread)


def test_bad_identity_columns() -> None:
    good = make()
    with pytest.raises(ValueError, match=r"design_id must be \(6,\) int64"):
        replace(good, design_id=good.design_id.astype(np.int32))
    with pytest.raises(ValueError, match="role codes"):
        replace(good, role=np.full(6, 7, np.int8))
    with pytest.raises(ValueError, match=r"appears 2 times"):
        replace(good, x_um=np.zeros(6), y_um=np.repeat([0.0, 1.0, 2.0], 2))


def test_concatenate_merges_replicas() -> None:
    a = make(pads(replica=0), seed=1)
    b = make(
        pads(replica=1),
        seed=2,
        registration_residual_px=0.4,
        registration_method="cross-correlation",
        provenance={"extractor": "mean", "config": {"other": 1}},
    )
    merged = ArraySpectra.concatenate([a, b])
    assert len(merged) == len(a) + len(b) == 12
    np.testing.assert_array_equal(merged.transmission[6:], b.transmission)
    np.testing.assert_array_equal(merged.replica, np.repeat([0, 1], 6))
    np.testing.assert_array_equal(merged.design_id[:6], merged.design_id[6:])  # replicas
    assert merged.array_name == "A0R0,A0R1"
    assert merged.hypercubes == ("A0R0.nc", "A0R1.nc")
    assert merged.registration_method == "fiducial-affine,cross-correlation"
    assert merged.registration_residual_px == 0.4  # the worst part's
    assert merged.provenance == {"extractor": "mean"}  # only what both agree on
    single = ArraySpectra.concatenate([a])
    assert_same(single, a)


def test_concatenate_refusals() -> None:
    a = make(pads(replica=0))
    b = make(pads(replica=1))
    with pytest.raises(ValueError, match="at least one"):
        ArraySpectra.concatenate([])
    shifted = make(pads(replica=1), wavelength_nm=WAVELENGTH_NM + 0.5)
    with pytest.raises(ValueError, match=r"part 1 \(A0R1\) has wavelength_nm .*only identical"):
        ArraySpectra.concatenate([a, shifted])
    n = len(b)
    fewer = make(
        pads(replica=1),
        wavelength_nm=WAVELENGTH_NM[:-1],
        transmission=b.transmission[:, :, :-1],
        spread=b.spread[:, :, :-1],
    )
    with pytest.raises(ValueError, match="6 bands"):
        ArraySpectra.concatenate([a, fewer])
    with pytest.raises(ValueError, match=r"erosion_margin_um=2\.0"):
        ArraySpectra.concatenate([a, replace(b, erosion_margin_um=2.0)])
    with pytest.raises(ValueError, match="chip_id='OTHER'"):
        ArraySpectra.concatenate([a, replace(b, chip_id="OTHER")])
    one_pol = replace(
        b,
        polarization=("x",),
        transmission=b.transmission[:, :1],
        spread=b.spread[:, :1],
        pixel_count=b.pixel_count[:, :1],
    )
    with pytest.raises(ValueError, match="polarization"):
        ArraySpectra.concatenate([a, one_pol])
    with pytest.raises(ValueError, match="appears 2 times"):
        ArraySpectra.concatenate([a, a])  # the same array merged twice
    # Rounding-level differences in the grid are the same bands.
    nudged = replace(b, wavelength_nm=WAVELENGTH_NM + 1e-9)
    assert len(ArraySpectra.concatenate([a, nudged])) == 2 * n


def test_read_errors_and_versions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_array_spectra(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable HDF5 per-array spectra file"):
        read_array_spectra(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["schema"] = "metascan.pairs"
    with pytest.raises(ValueError, match="not a per-array spectra file"):
        read_array_spectra(tmp_path / "other.h5")
    newer = tmp_path / "newer.h5"
    write_array_spectra(newer, make())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match="newer than supported"):
        read_array_spectra(newer)
    with pytest.raises(ValueError, match="reserved"):
        write_array_spectra(tmp_path / "a.h5", make(), {"chip_id": "x"})
    with pytest.raises(FileNotFoundError, match="output directory"):
        write_array_spectra(tmp_path / "nowhere" / "a.h5", make())

"""The RCWA model (torcwa) obeys the same physics, at tiny orders so the file stays fast."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# `make` installs the rcwa extra; a missing torcwa must fail these tests, not skip them.
import torch
import torcwa
from spectral_designs import (
    assert_rasters_roll,
    c4_designs,
    full_film,
    no_silicon,
    shifted,
    transposed,
)

from layout.design import DesignLibrary
from layout.generator import generate
from layout.raster import rasterize
from simulators.materials import refractive_index
from simulators.spectral import bare_substrate_transmission, film_transmission, get_model
from simulators.spectral.rcwa import (
    MissingBackendError,
    RcwaConfig,
    RcwaModel,
    nudge_off_anomalies,
    zero_order_powers,
)

W = np.array([460.0, 560.0, 700.0])
NUMERIC = 1e-8  # the same physics through differently ordered eigensolves


@pytest.fixture(scope="module")
def model() -> RcwaModel:
    return RcwaModel(RcwaConfig(orders=(1, 1), device="cpu"))


@pytest.fixture(scope="module")
def lib() -> DesignLibrary:
    return generate(40, seed=8).take(np.array([0, 1, 2, 3]))


def powers(
    image: np.ndarray, period: float, material: str = "a-Si:H", lam: np.ndarray = W
) -> tuple[np.ndarray, np.ndarray]:
    return zero_order_powers(
        torch, torcwa, image, period, lam, refractive_index(material, lam) ** 2,
        refractive_index("fused-silica", lam), 178.0, (1, 1), torch.complex128, torch.device("cpu"),
    )  # fmt: skip


def test_shape_and_range(model: RcwaModel, lib: DesignLibrary) -> None:
    s = model.spectra(lib, W, thickness_nm=178.0)
    assert s.shape == (4, 2, 3) and s.dtype == np.float64
    assert np.all(np.isfinite(s)) and s.min() >= 0 and s.max() <= 1
    assert model.describe()["device"] == "cpu" and model.precision == "double"


@pytest.mark.parametrize("orders", [(1, 1), (2, 2)])
@pytest.mark.parametrize("material", ["a-Si:H", "a-Si"])
def test_unpatterned_film_matches_airy(material: str, orders: tuple[int, int]) -> None:
    rc = RcwaModel(RcwaConfig(orders=orders, device="cpu"))
    s = rc.spectra(full_film(500.0), W, thickness_nm=178.0, material=material)
    airy = film_transmission(W, 178.0, material)
    np.testing.assert_allclose(s[0], np.stack([airy, airy]), atol=1e-6, rtol=0)
    bare = rc.spectra(no_silicon(500.0), W, thickness_nm=178.0, material=material)
    np.testing.assert_allclose(
        bare[0], np.stack([bare_substrate_transmission(W)] * 2), atol=1e-6, rtol=0
    )


def test_any_circular_shift_of_the_cell_gives_the_same_spectra(lib: DesignLibrary) -> None:
    image = rasterize(lib.take(slice(0, 1)))[0]
    T, R = powers(image, float(lib.period_nm[0]))
    # Shifts that wrap silicon across the cell border: the lattice cannot tell.
    for dy, dx in ((37, 101), (64, 0), (5, -77)):
        T2, R2 = powers(np.roll(image, (dy, dx), axis=(0, 1)), float(lib.period_nm[0]))
        np.testing.assert_allclose(T2, T, atol=NUMERIC)
        np.testing.assert_allclose(R2, R, atol=NUMERIC)


def test_translated_designs_give_the_same_spectra(model: RcwaModel, lib: DesignLibrary) -> None:
    part = lib.take(np.flatnonzero(lib.period_nm == lib.period_nm[0]))
    px = int(24 // (part.period_nm[0] / 128))
    moved = shifted(part, -px, px)
    assert_rasters_roll(part, moved, -px, px)
    np.testing.assert_allclose(
        model.spectra(moved, W, thickness_nm=178.0),
        model.spectra(part, W, thickness_nm=178.0),
        atol=NUMERIC,
    )


def test_transposition_swaps_x_and_y(model: RcwaModel, lib: DesignLibrary) -> None:
    s = model.spectra(lib, W, thickness_nm=178.0)
    np.testing.assert_allclose(
        model.spectra(transposed(lib), W, thickness_nm=178.0), s[:, ::-1], atol=NUMERIC
    )
    assert np.abs(s[:, 0] - s[:, 1]).max() > 0.01


def test_rotation_symmetric_designs_have_equal_x_and_y(model: RcwaModel) -> None:
    s = model.spectra(c4_designs(), W, thickness_nm=178.0)
    np.testing.assert_allclose(s[:, 0], s[:, 1], atol=NUMERIC)


def test_energy_is_conserved_without_loss_or_diffraction(lib: DesignLibrary) -> None:
    """Lossless n = 3.5, P = 300 nm < lambda / n_glass: only the zero orders carry power."""
    image = rasterize(generate(5, seed=3, config=None).take(np.array([0])))[0]
    T, R = powers(image, 300.0, material="n=3.5")
    np.testing.assert_allclose(T + R, 1.0, atol=1e-9)
    T_lossy, R_lossy = powers(image, 300.0, material="a-Si")
    assert np.all(T_lossy + R_lossy < 0.99)


def test_rayleigh_anomaly_is_nudged() -> None:
    glass = refractive_index("fused-silica", np.array([500.0, 510.0])).real
    nudged = nudge_off_anomalies(np.array([500.0, 510.0]), 500.0, (1, 1), glass, 1e-3)
    assert nudged.tolist() == [500.001, 510.0]
    image = rasterize(full_film(500.0))[0].copy()
    image[:, :40] = False  # a grating, so the (1, 0) order exists
    T, _ = powers(image, 500.0, lam=np.array([500.0]))
    assert np.all(T > 0.01)  # unguarded, torcwa returns exactly 0 here


def test_cache_solves_each_design_once(
    tmp_path: Path, lib: DesignLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache.h5"
    rc = RcwaModel(RcwaConfig(orders=(1, 1), device="cpu", cache_path=cache, cache_every=2))
    calls: list[float] = []
    solve = rc._solve_cell

    def counting(*args: Any) -> np.ndarray:
        calls.append(args[1])
        if len(calls) > 3:
            raise KeyboardInterrupt  # an interrupted run
        return solve(*args)

    monkeypatch.setattr(rc, "_solve_cell", counting)
    with pytest.raises(KeyboardInterrupt):
        rc.spectra(lib, W, thickness_nm=178.0)
    assert len(calls) == 4  # two batches of two: the first was appended before the interrupt
    calls.clear()
    monkeypatch.setattr(rc, "_solve_cell", lambda *a: (calls.append(a[1]), solve(*a))[1])
    twice = DesignLibrary.concatenate([lib, lib])  # replicas are solved once too
    s = rc.spectra(twice, W, thickness_nm=178.0)
    assert len(calls) == 2
    fresh = RcwaModel(RcwaConfig(orders=(1, 1), device="cpu")).spectra(lib, W, thickness_nm=178.0)
    np.testing.assert_allclose(s, np.concatenate([fresh, fresh]), atol=1e-12)
    calls.clear()
    rc.spectra(lib, W, thickness_nm=150.0)  # another thickness is another cache key
    rc.spectra(lib, W, thickness_nm=178.0, size_bias_nm=4.0)  # and a dilated pad another entry
    assert len(calls) == 8


def test_unreadable_cache_is_reported(tmp_path: Path, lib: DesignLibrary) -> None:
    bad = tmp_path / "cache.h5"
    bad.write_bytes(b"not hdf5")
    rc = RcwaModel(RcwaConfig(orders=(1, 1), device="cpu", cache_path=bad))
    with pytest.raises(ValueError, match="cannot be opened"):
        rc.spectra(lib, W, thickness_nm=178.0)


def test_missing_torcwa_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> Any:
        if name == "torcwa":
            raise ImportError("No module named 'torcwa'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingBackendError, match=r"pip install 'metascan\[rcwa\]'"):
        get_model("rcwa")


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="orders"):
        RcwaConfig(orders=(-1, 3))
    with pytest.raises(ValueError, match="device"):
        RcwaConfig(device="tpu")

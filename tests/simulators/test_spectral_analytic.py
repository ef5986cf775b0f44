"""The analytic model obeys the physics it must: symmetries, the bare film, ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spectral_designs import (
    E,
    assert_rasters_roll,
    c4_designs,
    full_film,
    no_silicon,
    room,
    shifted,
    transposed,
)

from layout.design import Design, DesignLibrary
from layout.generator import generate
from simulators.spectral import (
    MOCLIP_WAVELENGTHS_NM,
    AnalyticConfig,
    AnalyticModel,
    bare_substrate_transmission,
    film_transmission,
    get_model,
)

W = MOCLIP_WAVELENGTHS_NM
EXACT = 1e-12  # same arithmetic up to summation order


@pytest.fixture(scope="module")
def lib() -> DesignLibrary:
    return generate(400, seed=17)


@pytest.fixture(scope="module")
def model() -> AnalyticModel:
    return AnalyticModel()


def test_shape_range_and_determinism(lib: DesignLibrary, model: AnalyticModel) -> None:
    s = model.spectra(lib, W, thickness_nm=178.0)
    assert s.shape == (len(lib), 2, W.size) and s.dtype == np.float64
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0
    # Not trivially flat: designs differ and spectra have structure. (RCWA at [5,5] on the
    # a-Si reference designs: std 0.14, mean peak-to-peak 0.24; the calibrated model is
    # smoother than that, about 0.12 and 0.15.)
    assert s.std(axis=0).mean() > 0.05 and np.ptp(s, axis=2).mean() > 0.1
    single = AnalyticModel(AnalyticConfig(workers=1, batch_size=64)).spectra(
        lib, W, thickness_nm=178.0
    )
    np.testing.assert_allclose(single, s, atol=EXACT)  # batching only reorders sums


@pytest.mark.parametrize("period", [300, 400, 500, 600])
def test_translation_invariance(lib: DesignLibrary, model: AnalyticModel, period: int) -> None:
    part = lib.take(np.flatnonzero(lib.period_nm == period))
    pixel = period / 128
    rx, ry = room(part)
    assert rx.min() >= 25 and ry.min() >= 25  # the border margin leaves room for these shifts
    px, py = int(24 // pixel), -int(12 // pixel)
    moved = shifted(part, px, py)
    assert_rasters_roll(part, moved, px, py)
    np.testing.assert_allclose(
        model.spectra(moved, W, thickness_nm=150.0),
        model.spectra(part, W, thickness_nm=150.0),
        atol=EXACT,
    )


def test_transposition_swaps_x_and_y(lib: DesignLibrary, model: AnalyticModel) -> None:
    s = model.spectra(lib, W, thickness_nm=195.0)
    t = model.spectra(transposed(lib), W, thickness_nm=195.0)
    np.testing.assert_allclose(t, s[:, ::-1], atol=EXACT)
    assert np.abs(s[:, 0] - s[:, 1]).max() > 0.05  # and x, y really differ for most designs


def test_rotation_symmetric_designs_have_equal_x_and_y(model: AnalyticModel) -> None:
    s = model.spectra(c4_designs(), W, thickness_nm=178.0, material="a-Si")
    np.testing.assert_allclose(s[:, 0], s[:, 1], atol=EXACT)


@pytest.mark.parametrize("material", ["a-Si:H", "a-Si", "n=3.6"])
@pytest.mark.parametrize("thickness", [150.0, 178.0, 195.0])
def test_unpatterned_film_is_exactly_airy(
    model: AnalyticModel, material: str, thickness: float
) -> None:
    for period in (300.0, 600.0):
        s = model.spectra(full_film(period), W, thickness_nm=thickness, material=material)
        airy = film_transmission(W, thickness, material)
        np.testing.assert_allclose(s[0], np.stack([airy, airy]), atol=EXACT, rtol=0)
        # A dilated full film is still the same film.
        dilated = model.spectra(
            full_film(period), W, thickness_nm=thickness, material=material, size_bias_nm=10.0
        )
        np.testing.assert_allclose(dilated, s, atol=EXACT, rtol=0)
        empty = model.spectra(no_silicon(period), W, thickness_nm=thickness, material=material)
        np.testing.assert_allclose(
            empty[0], np.stack([bare_substrate_transmission(W)] * 2), atol=EXACT, rtol=0
        )


def test_larger_disks_resonate_at_longer_wavelengths(model: AnalyticModel) -> None:
    """physics.md: disk dips bracket n_Si * sqrt(D h); the dips move red as D grows."""
    diameters = [100, 140, 180, 220]
    disks = DesignLibrary.from_designs([Design(400.0, (E(200, 200, d, d),)) for d in diameters])
    # In a-Si:H: the uncalibrated model's a-Si dips do not follow this rule yet (issue 16,
    # the analytic model's calibration against RCWA); the default film is a-Si.
    s = model.spectra(disks, np.arange(420.0, 761.0, 2.0), thickness_nm=178.0, material="a-Si:H")
    deepest = np.arange(420.0, 761.0, 2.0)[np.argmin(s[:, 0], axis=1)]
    assert np.all(np.diff(deepest) > 0)
    # Dilating a disk is the same as drawing it larger.
    np.testing.assert_allclose(
        model.spectra(disks.take(slice(0, 1)), W, thickness_nm=178.0, size_bias_nm=40.0),
        model.spectra(disks.take(slice(1, 2)), W, thickness_nm=178.0),
        atol=EXACT,
    )


def test_per_design_size_bias(lib: DesignLibrary, model: AnalyticModel) -> None:
    part = lib.take(slice(0, 20))
    bias = np.linspace(-10, 10, 20)
    s = model.spectra(part, W, thickness_nm=178.0, size_bias_nm=bias)
    one = model.spectra(part.take(slice(3, 4)), W, thickness_nm=178.0, size_bias_nm=bias[3])
    np.testing.assert_allclose(s[3:4], one, atol=EXACT)
    assert not np.allclose(s, model.spectra(part, W, thickness_nm=178.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wavelength_nm": []}, "non-empty 1-D"),
        ({"wavelength_nm": [500, -1]}, "finite and > 0"),
        ({"thickness_nm": 0.0}, "thickness_nm=0.0 must be finite and > 0"),
        ({"material": "Si"}, "unknown material 'Si'"),
        ({"size_bias_nm": [1.0, 2.0]}, r"one value per design \(3\), got shape \(2,\)"),
        ({"wavelength_nm": [200.0]}, "outside its data"),  # a-Si's data: 250-2000 nm
    ],
)
def test_bad_input_is_one_line_value_error(
    lib: DesignLibrary, model: AnalyticModel, kwargs: dict[str, Any], message: str
) -> None:
    args = {"wavelength_nm": W, "thickness_nm": 178.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.spectra(lib.take(slice(0, 3)), args.pop("wavelength_nm"), **args)


def test_registry() -> None:
    assert get_model("analytic").name == "analytic"
    with pytest.raises(ValueError, match="unknown spectral model 'fdtd'; known: analytic, rcwa"):
        get_model("fdtd")
    with pytest.raises(ValueError, match=r"'analytic'.*unexpected keyword"):
        get_model("analytic", orders=(3, 3))
    with pytest.raises(ValueError, match="anisotropy"):
        AnalyticConfig(anisotropy=2.0)


def test_calibrated_model_agrees_with_rcwa_on_held_out_designs(model: AnalyticModel) -> None:
    """The 70 designs of the a-Si reference (rcwa at [5,5], 178 nm) that the calibration never
    fitted on (``abs(design_id) % 10 < 3``; scripts/calibrate_analytic.py --export-heldout).
    Calibrated: RMSE 0.075, r 0.857; the model before calibration: RMSE 0.281, r 0.109, and a
    constant per-band mean would give about RMSE 0.14, r 0.16."""
    path = Path(__file__).resolve().parents[1] / "data" / "rcwa_heldout_a-Si_178nm.npz"
    with np.load(path) as d:
        columns = {k: d[k] for k in d.files}
    assert np.all(np.abs(columns["design_id"]) % 10 < 3)  # held-out designs only
    c = columns
    lib = DesignLibrary.from_arrays(
        c["period_nm"], c["kind"], c["center_x_nm"], c["center_y_nm"], c["width_nm"],
        c["height_nm"], c["inner_width_nm"], c["inner_height_nm"],
    )  # fmt: skip
    np.testing.assert_array_equal(lib.design_id, columns["design_id"])
    s = model.spectra(
        lib, columns["wavelength_nm"], thickness_nm=float(columns["thickness_nm"]),
        material=str(columns["material"]),
    )  # fmt: skip
    truth, before = columns["rcwa_n5"], columns["analytic"]

    def rmse(a: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - truth) ** 2)))

    r = np.corrcoef(s.ravel(), truth.ravel())[0, 1]
    assert rmse(s) < 0.09 and r > 0.8, (rmse(s), r)
    assert rmse(s) < rmse(before) / 3
    for p in range(2):  # both polarizations, not one carrying the other
        assert np.corrcoef(s[:, p].ravel(), truth[:, p].ravel())[0, 1] > 0.75


def test_slab_modes_solve_the_dispersion_relation() -> None:
    """The guided modes behind the grating resonances, against an independent root finder."""
    from scipy.optimize import brentq

    from simulators.spectral.guided_modes import ModeTable, slab_mode_index

    nf, ns, hl = 2.2, 1.46, 0.3
    for tm in (False, True):
        ra, rs = ((nf / 1.0) ** 2, (nf / ns) ** 2) if tm else (1.0, 1.0)

        def mismatch(b: float, ra: float = ra, rs: float = rs) -> float:
            k = np.sqrt(nf**2 - b**2)
            ga, gs = np.sqrt(b**2 - 1.0), np.sqrt(b**2 - ns**2)
            return float(2 * np.pi * hl * k - np.arctan(ra * ga / k) - np.arctan(rs * gs / k))

        expected = brentq(mismatch, ns + 1e-12, nf - 1e-12, xtol=1e-14)
        assert abs(slab_mode_index(nf, hl, ns, tm=tm) - expected) < 1e-9
    assert slab_mode_index(nf, hl, ns) > slab_mode_index(nf, hl, ns, tm=True)  # TE above TM
    assert slab_mode_index(1.5, 0.05, ns) == ns  # cut off: the mode sits on the anomaly
    table = ModeTable.build(np.array([500.0, 700.0]), 178.0, np.array([1.46, 1.455]), 20.0)
    te, _ = table.lookup(np.array([[4.84, 4.84]]))
    direct = slab_mode_index(2.2, 178.0 / np.array([500.0, 700.0]), np.array([1.46, 1.455]))
    np.testing.assert_allclose(te[0], direct, atol=2e-3)

"""Refractive indices against the numbers physics.md quotes from their sources."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.materials import (
    EVAPORATED_A_SI,
    HC_EV_NM,
    PIERCE_SPICER_TABLE,
    get_material,
    refractive_index,
)


def test_asih_reproduces_the_tabulated_values() -> None:
    # physics.md section 2 (torcwa aSiH.txt), at the table's own wavelengths: exact to its digits.
    lam = np.array([450, 500, 550, 600, 650, 700, 730])
    n = refractive_index("a-Si:H", lam)
    np.testing.assert_allclose(n.real, [3.804, 3.583, 3.413, 3.299, 3.219, 3.160, 3.132], atol=6e-4)
    np.testing.assert_allclose(
        n.imag, [0.296, 0.121, 0.0604, 0.0358, 0.0239, 0.0174, 0.0150], atol=5e-4
    )


def test_asih_between_samples_is_smooth_and_monotonic() -> None:
    lam = np.linspace(450, 730, 281)
    n = refractive_index("a-Si:H", lam)
    assert np.all(np.diff(n.real) < 0) and np.all(np.diff(n.imag) < 0)


def test_evaporated_tauc_lorentz_fit_matches_pierce_spicer() -> None:
    lam, n_tab, k_tab = PIERCE_SPICER_TABLE.T
    n = refractive_index("a-Si", lam)
    # The fit's residuals against the 8-point table, as materials.py states them.
    np.testing.assert_allclose(n.real, n_tab, atol=0.012)
    np.testing.assert_allclose(n.imag, k_tab, atol=0.006)


def test_evaporated_kramers_kronig_consistency() -> None:
    """eps1 from the closed form equals a numerical principal-value integral of eps2."""
    tl = EVAPORATED_A_SI
    energy = HC_EV_NM / 550.0
    xi = np.linspace(tl.gap_ev + 1e-9, 400.0, 2_000_001)
    eps2 = tl.permittivity(HC_EV_NM / xi).imag
    f_e = energy * tl.permittivity(np.array([550.0])).imag[0]
    integrand = np.divide(
        xi * eps2 - f_e, xi**2 - energy**2, out=np.zeros_like(xi), where=xi != energy
    )
    pv = (
        np.trapezoid(integrand, xi)
        + f_e / (2 * energy) * np.log((tl.gap_ev + energy) / abs(tl.gap_ev - energy))
        - f_e / 400.0
    )
    eps1 = tl.eps_inf + 2 / np.pi * pv
    assert eps1 == pytest.approx(tl.permittivity(np.array([550.0])).real[0], abs=1e-4)


def test_fused_silica_malitson() -> None:
    n = refractive_index("fused-silica", [450, 550, 650, 730])
    np.testing.assert_allclose(n.real, [1.4656, 1.4599, 1.4565, 1.4546], atol=1e-4)
    assert np.all(n.imag == 0)


def test_constant_index_and_errors() -> None:
    assert refractive_index("n=3.5+0.01j", [500, 600]).tolist() == [3.5 + 0.01j] * 2
    with pytest.raises(
        ValueError, match="unknown material 'Si'; known: a-Si, a-Si:H, fused-silica"
    ):
        get_material("Si")
    with pytest.raises(ValueError, match="loss, not gain"):
        get_material("n=3.5-0.1j")
    with pytest.raises(ValueError, match="expected n=<number>"):
        get_material("n=abc")
    with pytest.raises(ValueError, match=r"outside its data \(350-990 nm"):
        refractive_index("a-Si:H", [300.0])
    assert np.isfinite(refractive_index("a-Si", [HC_EV_NM / EVAPORATED_A_SI.gap_ev])).all()
    with pytest.raises(ValueError, match="finite and > 0"):
        refractive_index("a-Si", [np.nan])


def test_every_film_a_manifest_may_record_has_an_index_model() -> None:
    from layout.material import DEFAULT_MATERIAL, FILM_MATERIALS

    assert DEFAULT_MATERIAL == "a-Si"  # the LPCVD film MOCLIP fabricated (materials.py)
    for name in FILM_MATERIALS:
        assert np.all(np.isfinite(refractive_index(name, [450.0, 730.0])))

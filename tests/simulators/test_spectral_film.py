"""The Airy film every spectral model must reproduce, against physics.md's checked numbers."""

from __future__ import annotations

import numpy as np

from simulators.spectral import airy_stack, bare_substrate_transmission, film_transmission


def test_asih_film_on_glass_matches_the_checked_values() -> None:
    # physics.md section 1: 178 nm a-Si:H on fused silica, air -> glass (RCWA agreed to < 8e-10).
    T = film_transmission([450, 550, 650, 730], 178.0, "a-Si:H")
    np.testing.assert_allclose(T, [0.1370, 0.4832, 0.5725, 0.4378], atol=5e-5)


def test_lossless_film_conserves_energy() -> None:
    lam = np.linspace(400, 800, 41)
    T, R = airy_stack(3.5, 178.0, lam, 1.46)
    np.testing.assert_allclose(T + R, 1.0, atol=1e-12)
    T_lossy, R_lossy = airy_stack(3.5 + 0.2j, 178.0, lam, 1.46)
    assert np.all(T_lossy + R_lossy < 1.0)


def test_half_wave_film_is_absent_and_bare_glass_is_fresnel() -> None:
    n_glass = 1.46
    # A film of optical thickness lambda/2 leaves the bare interface's transmission.
    T, _ = airy_stack(2.0, 500.0 / (2 * 2.0), 500.0, n_glass)
    assert abs(T - 4 * n_glass / (1 + n_glass) ** 2) < 1e-12
    bare = bare_substrate_transmission([450, 730])
    np.testing.assert_allclose(bare, [0.96434, 0.96569], atol=1e-5)  # 4n/(1+n)^2, Malitson n

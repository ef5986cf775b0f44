"""The filter passband: band averages of known spectra, and the guards against biased quadrature."""

from __future__ import annotations

import numpy as np
import pytest

from instruments.protocols import BandwidthMode
from simulators.passband import (
    DEFAULT_BAND_CENTERS_NM,
    PassbandConfig,
    band_average,
    band_weights,
    filter_transmission,
    fine_grid,
)

PASSING = [BandwidthMode.NARROW, BandwidthMode.MEDIUM, BandwidthMode.WIDE]


@pytest.mark.parametrize("mode", PASSING)
def test_constant_spectrum_averages_to_itself(mode: BandwidthMode) -> None:
    lam = fine_grid(mode=mode)
    spectra = np.full((3, 2, lam.size), 0.37)
    out = band_average(spectra, lam, mode=mode)
    assert out.shape == (3, 2, 29)
    np.testing.assert_allclose(out, 0.37, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", PASSING)
def test_linear_spectrum_averages_to_its_centre_value(mode: BandwidthMode) -> None:
    # The Gaussian is symmetric about each centre; only the lamp's slope (3200 K blackbody,
    # d ln S / d lambda <= 0.012 / nm here) shifts the weighted mean, by sigma^2 * that slope:
    # <= 0.3 nm for NARROW, <= 3.5 nm for WIDE at 730 nm (sigma 26 nm there).
    lam = fine_grid(mode=mode)
    slope = 1e-3  # per nm
    out = band_average(0.5 + slope * (lam - 600.0), lam, mode=mode)
    expected = 0.5 + slope * (DEFAULT_BAND_CENTERS_NM - 600.0)
    tolerance_nm = {BandwidthMode.NARROW: 0.3, BandwidthMode.MEDIUM: 1.2, BandwidthMode.WIDE: 3.5}
    np.testing.assert_allclose(out, expected, rtol=0, atol=slope * tolerance_nm[mode])


def test_linear_spectrum_is_exact_under_a_flat_source() -> None:
    # Without the lamp's slope, the symmetric quadrature about each centre is exact.
    cfg = PassbandConfig(lamp_temperature_k=None)
    lam = fine_grid(mode=BandwidthMode.NARROW, config=cfg)
    out = band_average(0.2 + 1e-3 * lam, lam, mode=BandwidthMode.NARROW, config=cfg)
    np.testing.assert_allclose(out, 0.2 + 1e-3 * DEFAULT_BAND_CENTERS_NM, atol=1e-12)


def test_a_narrow_dip_is_shallower_through_a_finite_passband() -> None:
    centres = np.array([600.0])
    lam = fine_grid(centres, BandwidthMode.WIDE)  # the widest grid covers every mode
    dip = 1.0 - 0.8 * np.exp(-0.5 * ((lam - 600.0) / 2.0) ** 2)  # 4.7 nm FWHM, 0.8 deep
    narrow = band_average(dip, lam, centres, BandwidthMode.NARROW)[0]
    medium = band_average(dip, lam, centres, BandwidthMode.MEDIUM)[0]
    wide = band_average(dip, lam, centres, BandwidthMode.WIDE)[0]
    assert 0.2 < narrow < medium < wide < 1.0
    assert narrow < 0.75  # still clearly visible: 0.8 * 2 / hypot(2, 5.05) deep


def test_fwhm_follows_mode_and_grows_as_lambda_squared() -> None:
    cfg = PassbandConfig()
    assert cfg.fwhm_nm(BandwidthMode.NARROW, 550.0) == pytest.approx(10.0)
    assert cfg.fwhm_nm(BandwidthMode.WIDE, 550.0) == pytest.approx(35.0)
    assert cfg.fwhm_nm(BandwidthMode.NARROW, 730.0) == pytest.approx(10.0 * (730 / 550) ** 2)
    # Measured FWHM of the sampled profile matches the configured one.
    lam = np.arange(500.0, 600.0, 0.01)
    profile = filter_transmission(lam, 550.0, BandwidthMode.NARROW)[0]
    above = lam[profile >= profile.max() / 2]
    assert above[-1] - above[0] == pytest.approx(10.0, abs=0.03)
    assert profile.max() == pytest.approx(0.45)


def test_black_blocks_and_cannot_be_averaged() -> None:
    lam = np.arange(440.0, 760.0, 2.0)
    assert not np.any(filter_transmission(lam, DEFAULT_BAND_CENTERS_NM, BandwidthMode.BLACK))
    with pytest.raises(ValueError, match="BLACK"):
        band_average(np.ones(lam.size), lam, mode=BandwidthMode.BLACK)


def test_grids_that_would_bias_the_average_are_refused() -> None:
    with pytest.raises(ValueError, match="does not cover"):
        band_weights(np.arange(450.0, 731.0, 1.0), DEFAULT_BAND_CENTERS_NM, BandwidthMode.NARROW)
    with pytest.raises(ValueError, match="coarser"):
        band_weights(np.arange(400.0, 800.0, 5.0), [450.0], BandwidthMode.NARROW)
    with pytest.raises(ValueError, match="must match"):
        band_average(np.ones(5), fine_grid())


def test_weights_are_normalised_and_blue_is_weighted_toward_red() -> None:
    lam = fine_grid()
    w = band_weights(lam, DEFAULT_BAND_CENTERS_NM, BandwidthMode.NARROW)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    mean = w @ lam
    # The lamp rises toward the red, so each band's weighted centre sits slightly redward.
    assert np.all(mean > DEFAULT_BAND_CENTERS_NM) and np.all(mean - DEFAULT_BAND_CENTERS_NM < 0.3)

"""Colorimetry against published values: the sRGB primaries' CIELAB, Sharma's CIEDE2000 test
pairs, the white and greys of any lamp, hues of band-pass spectra, and the truncation's error."""

from __future__ import annotations

import numpy as np
import pytest

from dataset.colorimetry import Colorimetry, delta_e, lab_of_srgb, lab_to_srgb

BANDS = np.arange(450.0, 731.0, 10.0)


def flat(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2, BANDS.size), value)


@pytest.mark.parametrize("lamp_k", [2800.0, 3200.0, 6500.0])
def test_a_clear_pad_is_white_and_a_grey_one_is_neutral_under_any_lamp(lamp_k: float) -> None:
    c = Colorimetry(BANDS, lamp_k)
    np.testing.assert_allclose(c.lab_of_spectra(flat(1.0))[0], [100, 0, 0], atol=1e-6)
    np.testing.assert_allclose(c.srgb_of_spectra(flat(1.0))[0], [1, 1, 1], atol=1e-3)
    # Y = 0.18 is L* = 49.50 (CIE 1976: 116 * 0.18^(1/3) - 16).
    np.testing.assert_allclose(c.lab_of_spectra(flat(0.18))[0], [49.496, 0, 0], atol=1e-2)


def test_srgb_primaries_have_their_published_cielab() -> None:
    lab = lab_of_srgb(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]]))
    published = [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86]]
    np.testing.assert_allclose(lab, published, atol=0.05)
    np.testing.assert_allclose(lab_to_srgb(lab), np.eye(3), atol=1e-3)


def test_ciede2000_matches_sharmas_test_pairs() -> None:
    # Sharma, Wu, Dalal (2005), Table 1, pairs 1, 7 and 17.
    a = np.array([[50.0, 2.6772, -79.7751], [50.0, 0.0, 0.0], [50.0, 2.5, 0.0]])
    b = np.array([[50.0, 0.0, -82.7485], [50.0, -1.0, 2.0], [73.0, 25.0, -18.0]])
    np.testing.assert_allclose(delta_e(a, b), [2.0425, 2.3669, 27.1492], atol=1e-4)


def test_band_passes_have_the_hue_of_their_band() -> None:
    c = Colorimetry(BANDS)
    red = np.where(BANDS >= 620, 0.9, 0.05)[None, None].repeat(2, axis=1)
    blue = np.where(BANDS <= 480, 0.9, 0.05)[None, None].repeat(2, axis=1)
    green = np.where((BANDS >= 510) & (BANDS <= 560), 0.9, 0.05)[None, None].repeat(2, axis=1)
    (_, r_a, r_b), (_, _, b_b), (_, g_a, _) = c.lab_of_spectra(np.concatenate([red, blue, green]))
    assert r_a > 20 and r_b > 10, (r_a, r_b)
    assert b_b < -20, b_b
    assert g_a < -20, g_a
    # Unpolarized light: a pad red in x and blue in y looks like their mean.
    mixed = np.stack([red[0, 0], blue[0, 0]])[None]
    mean = (red + blue) / 2
    np.testing.assert_allclose(c.lab_of_spectra(mixed), c.lab_of_spectra(mean), atol=1e-9)


def test_truncation_error_is_zero_for_flat_tails_and_measured_otherwise() -> None:
    c = Colorimetry(BANDS)
    full = np.arange(380.0, 781.0, 5.0)
    smooth = np.interp(full, [380, 780], [0.4, 0.7])  # linear: the tails are not flat
    flat_tails = np.clip(np.interp(full, BANDS, np.linspace(0.3, 0.8, BANDS.size)), 0, 1)
    violet = np.where(full < 450, 0.9, 0.3)  # everything interesting is where nothing is measured
    spectra = np.stack([flat_tails, smooth, violet])[:, None].repeat(2, axis=1)
    error = c.truncation_delta_e(full, spectra)
    assert error[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < error[1] < error[2]
    assert error[2] > 3  # a violet the bands cannot see


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="lamp_temperature_k=100"):
        Colorimetry(BANDS, 100.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        Colorimetry(BANDS[::-1])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, 29\)"):
        Colorimetry(BANDS).lab_of_spectra(np.ones((3, 29)))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        lab_of_srgb(np.array([[256, 0, 0]]))
    with pytest.raises(ValueError, match="380-780"):
        Colorimetry(BANDS).lab_of_full_spectra(BANDS, flat(0.5))

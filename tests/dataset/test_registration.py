"""Pad-grid registration against the virtual microscope's own pixel map.

The microscope knows exactly which chip point each pixel sees (``pixel_map``); registration
only sees flat-fielded images and the manifest. It must recover the map to a small fraction of
a pixel from a prior that is off by pixels (stage landing, alignment) and a camera rotation it
is not told.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray

from dataset.registration import METHOD, nominal_transform, register_grid
from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, Role
from simulators.microscope.config import LampConfig, MicroscopeConfig, SensorConfig
from simulators.microscope.microscope import OpticalState, VirtualMicroscope
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import VirtualChip

SENSOR_PX = 176
BANDS_NM = (460.0, 520.0, 580.0, 640.0, 700.0)


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """One 6x6 array of 6 µm pads (36 µm): it fills most of a 44 µm field."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=6, cols=6, replicas=1, companion_size=0)
    return plan_chip(generate(36, seed=5), config)


@pytest.fixture(scope="module")
def chip(manifest: ChipManifest) -> VirtualChip:
    return VirtualChip(manifest, AnalyticModel())


def pads(manifest: ChipManifest) -> NDArray[np.float64]:
    p = manifest.pads
    sel = p.role == Role.DATASET
    return np.column_stack([p.x_um[sel], p.y_um[sel]])


def render(
    chip: VirtualChip, camera_rotation_deg: float, noise: float = 0.003, seed: int = 0
) -> tuple[NDArray[np.float32], VirtualMicroscope, tuple[float, float, float]]:
    """Flat-fielded transmission images (K, H, W) of the array centre in both polarizations,
    with Gaussian noise, and the microscope and stage they were rendered at."""
    base = MicroscopeConfig(
        sensor=SensorConfig(width_px=SENSOR_PX, height_px=SENSOR_PX),
        lamp=LampConfig(drift_rms=0.0, flicker_rms=0.0),
    )
    config = replace(base, optics=replace(base.optics, camera_rotation_deg=camera_rotation_deg))
    mic = VirtualMicroscope(chip, config, threads=1)
    stage = (*mic.chip_to_stage(18.0, 18.0), 0.0)
    glass_stage = (*mic.chip_to_stage(-60.0, 18.0), 0.0)
    rng = np.random.default_rng(seed)
    images = []
    for wl in BANDS_NM:
        for angle in (0.0, 45.0):
            on = mic.sample_rate(OpticalState(wl, BandwidthMode.NARROW, angle, stage))
            off = mic.sample_rate(OpticalState(wl, BandwidthMode.NARROW, angle, glass_stage))
            assert on is not None and off is not None
            t = on / off
            images.append(t + rng.normal(0.0, noise, t.shape).astype(np.float32))
    return np.array(images, dtype=np.float32), mic, stage


def true_pixels(
    mic: VirtualMicroscope, stage: tuple[float, float, float], centres: NDArray[np.float64]
) -> NDArray[np.float64]:
    row, col = mic.pixel_map(stage).to_pixel(centres[:, 0], centres[:, 1])
    return np.column_stack([col, row])


@pytest.mark.parametrize(
    ("prior_error_um", "camera_rotation_deg"),
    [((0.0, 0.0), 0.3), ((1.7, -1.1), 0.3), ((-2.2, 0.9), 1.0)],
)
def test_registration_recovers_the_true_pixel_map(
    chip: VirtualChip,
    manifest: ChipManifest,
    prior_error_um: tuple[float, float],
    camera_rotation_deg: float,
) -> None:
    images, mic, stage = render(chip, camera_rotation_deg)
    try:
        centre = np.array(mic.mount_to_chip(stage[0], stage[1])) + np.array(prior_error_um)
        nominal = nominal_transform(centre, 0.25, SENSOR_PX, SENSOR_PX)
        centres = pads(manifest)
        found = register_grid(images, centres, 6.0, 6.0, nominal)
        error = found.transform.apply(centres) - true_pixels(mic, stage, centres)
        prior = nominal.apply(centres) - true_pixels(mic, stage, centres)
        expected_rotation = camera_rotation_deg - mic.config.mount.rotation_deg
    finally:
        mic.close()
    print(
        f"prior off by {np.abs(prior).max():.2f} px; registered: max error "
        f"{np.abs(error).max():.3f} px, residual {found.residual_px:.3f} px rms over "
        f"{found.pad_index.size} pads, rotation {found.transform.rotation_deg:.3f} deg"
    )
    assert found.reliable and found.method == METHOD
    assert np.abs(error).max() < 0.1  # every pad centre to a tenth of a pixel
    assert found.residual_px < 0.1
    assert found.pad_index.size == len(centres)
    # 0.05 deg turns the field's outermost pads by 0.05 px: the positions above are the test.
    assert found.transform.rotation_deg == pytest.approx(expected_rotation, abs=0.05)
    assert found.describe()["um_per_px"] == pytest.approx(0.25, rel=1e-3)


def test_affine_model_finds_no_shear_where_there_is_none(
    chip: VirtualChip, manifest: ChipManifest
) -> None:
    images, mic, stage = render(chip, 0.3, seed=1)
    try:
        centre = mic.mount_to_chip(stage[0], stage[1])
        nominal = nominal_transform(centre, 0.25, SENSOR_PX, SENSOR_PX)
        centres = pads(manifest)
        found = register_grid(images, centres, 6.0, 6.0, nominal, model="affine")
        error = found.transform.apply(centres) - true_pixels(mic, stage, centres)
    finally:
        mic.close()
    assert "affine" in found.method
    assert abs(found.transform.shear) < 1e-3
    assert np.abs(error).max() < 0.1


def test_a_pad_with_a_false_edge_is_left_out_of_the_fit(
    chip: VirtualChip, manifest: ChipManifest
) -> None:
    """A scratch inside one pad along its left edge, stronger than the edge, moves the measured
    centre of that pad (and of its left neighbour, which shares the edge) by pixels; the fit
    drops them and still places every other pad exactly."""
    images, mic, stage = render(chip, 0.3, seed=2)
    try:
        centres = pads(manifest)
        truth = true_pixels(mic, stage, centres)
        centre = mic.mount_to_chip(stage[0], stage[1])
    finally:
        mic.close()
    bad = 14
    col, row = np.rint(truth[bad]).astype(int)
    # a dark stripe 3 px right of the pad's left edge, over the pad's height, in every band
    left = col - 12 + 3
    images[:, row - 10 : row + 11, left : left + 2] = 0.0
    nominal = nominal_transform(centre, 0.25, SENSOR_PX, SENSOR_PX)
    found = register_grid(images, centres, 6.0, 6.0, nominal)
    error = found.transform.apply(centres) - truth
    dropped = sorted(set(range(len(centres))) - set(found.pad_index.tolist()))
    assert dropped == [bad - 1, bad]
    assert np.abs(np.delete(error, bad, axis=0)).max() < 0.1
    assert found.residual_px < 0.1


def test_an_image_without_pads_is_not_trusted(manifest: ChipManifest) -> None:
    rng = np.random.default_rng(3)
    images = (1.0 + rng.normal(0.0, 0.003, (4, SENSOR_PX, SENSOR_PX))).astype(np.float32)
    nominal = nominal_transform((18.0, 18.0), 0.25, SENSOR_PX, SENSOR_PX)
    found = register_grid(images, pads(manifest), 6.0, 6.0, nominal)
    assert not found.reliable
    assert found.residual_px >= 5.0  # reported as the search range: no claim of accuracy
    assert found.pad_index.size == 0


def test_nominal_transform_puts_chip_x_along_columns_and_chip_y_up_the_rows() -> None:
    t = nominal_transform((100.0, 50.0), 0.25, 101, 201)
    np.testing.assert_allclose(t.apply([100.0, 50.0]), [100.0, 50.0])  # the image centre
    np.testing.assert_allclose(t.apply([101.0, 50.0]), [104.0, 50.0])  # +x: 4 columns right
    np.testing.assert_allclose(t.apply([100.0, 51.0]), [100.0, 46.0])  # +y: 4 rows up
    with pytest.raises(ValueError, match=r"pixel_size_um=0\.0 must be"):
        nominal_transform((0.0, 0.0), 0.0, 10, 10)
    with pytest.raises(ValueError, match="must be two finite numbers"):
        nominal_transform((np.nan, 0.0), 0.25, 10, 10)


def test_bad_geometry_is_refused(manifest: ChipManifest) -> None:
    images = np.ones((1, 32, 32), dtype=np.float32)
    nominal = nominal_transform((0.0, 0.0), 0.25, 32, 32)
    with pytest.raises(ValueError, match=r"pad_size_um=7\.0 must be > 0 and <= pad_pitch_um"):
        register_grid(images, pads(manifest), 7.0, 6.0, nominal)
    with pytest.raises(ValueError, match="model='rigid'"):
        register_grid(images, pads(manifest), 6.0, 6.0, nominal, model="rigid")  # type: ignore[arg-type]

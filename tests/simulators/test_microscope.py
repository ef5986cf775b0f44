"""Image formation: the virtual microscope against the virtual chip's truth, and its physics.

Ground truth is the truth file's passband-averaged transmission (make_truth); a measurement
through rendered frames (dark-subtracted, flat-fielded on bare glass, mean over a pad's centre)
must recover it, which ties the renderer's light path, passband and polarisation handling to
the same definitions the processing stage will be held to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from dataset.truth_file import Truth
from instruments.basler.pylon_camera import BaslerCamera
from instruments.protocols import BandwidthMode, Camera
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, Role
from simulators.devices.ell14 import Ell14Emulator
from simulators.devices.kurios import KuriosEmulator
from simulators.devices.ms2000 import Ms2000Emulator, Ms2000EmulatorConfig
from simulators.microscope.cameras import PylonImageFeed, SimCamera
from simulators.microscope.config import (
    LampConfig,
    MicroscopeConfig,
    MicroscopeOptics,
    SensorConfig,
)
from simulators.microscope.microscope import OpticalState, VirtualMicroscope
from simulators.microscope.preview import glass_exposure_s
from simulators.microscope.scene import box_blur_profile
from simulators.microscope.states import EmulatorStates
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import VirtualChip, make_truth

NARROW = BandwidthMode.NARROW
STEADY_LAMP = LampConfig(drift_rms=0.0, flicker_rms=0.0)
SENSOR = SensorConfig(width_px=160, height_px=160)


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """One 4x4 array of 6 µm pads (24 µm), two replicas, 2x2 companions, fiducials."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=4, cols=4, replicas=2, companion_size=2)
    return plan_chip(generate(32, seed=3), config)


@pytest.fixture(scope="module")
def chip(manifest: ChipManifest) -> VirtualChip:
    return VirtualChip(manifest, AnalyticModel())


@pytest.fixture(scope="module")
def truth(chip: VirtualChip) -> Truth:
    return make_truth(chip)


def microscope(chip: VirtualChip, **changes: object) -> VirtualMicroscope:
    config = replace(MicroscopeConfig(sensor=SENSOR, lamp=STEADY_LAMP), **changes)  # type: ignore[arg-type]
    return VirtualMicroscope(chip, config, threads=1)


@pytest.fixture
def steady(chip: VirtualChip) -> Iterator[VirtualMicroscope]:
    with microscope(chip) as mic:
        yield mic


def array_centre_stage(mic: VirtualMicroscope, name: str = "A0R0") -> tuple[float, float, float]:
    m = mic.chip.manifest
    k = m.arrays.name.index(name)
    half = 0.5 * m.pad_pitch_um
    u = m.arrays.origin_x_um[k] + half * m.arrays.cols[k]
    v = m.arrays.origin_y_um[k] + half * m.arrays.rows[k]
    return (*mic.chip_to_stage(u, v), 0.0)


def mean_frames(
    mic: VirtualMicroscope, state: OpticalState, frames: int = 8, exposure_s: float = 0.05
) -> NDArray[np.float64]:
    images = [
        mic.render("sample", state, exposure_s=exposure_s, gain_db=0.0, bit_depth=12, frame=i)
        for i in range(frames)
    ]
    return np.mean(np.array(images, dtype=np.float64), axis=0)


def measured_transmission(
    mic: VirtualMicroscope, wavelength_nm: float, rotator_deg: float, truth: Truth
) -> dict[int, float]:
    """Pad-centre transmission per pad-table row, measured as processing will measure it."""
    stage = array_centre_stage(mic)
    flat = (*mic.chip_to_stage(-40.0, -40.0), 0.0)  # bare glass, far from pads and fiducials
    state = OpticalState(wavelength_nm, NARROW, rotator_deg, stage)
    exposure_s = glass_exposure_s(mic, wavelength_nm, fill=0.6)
    sample = mean_frames(mic, state, exposure_s=exposure_s)
    glass = mean_frames(mic, replace(state, stage_um=flat), exposure_s=exposure_s)
    dark = mean_frames(mic, replace(state, mode=BandwidthMode.BLACK), exposure_s=exposure_s)
    assert glass.max() < 4000  # nothing saturates, or the ratio would be wrong
    band = int(np.argmin(np.abs(truth.band_center_nm - wavelength_nm)))
    ratio = (sample - dark) / (glass - dark) * truth.glass_transmission[band]
    pixels = mic.pixel_map(stage)
    pads = mic.chip.manifest.pads
    out = {}
    for row in np.flatnonzero((pads.replica == 0) & (pads.role == Role.DATASET)):
        r, c = pixels.to_pixel(pads.x_um[row], pads.y_um[row])
        r, c = round(float(r)), round(float(c))
        out[int(row)] = float(ratio[r - 6 : r + 7, c - 6 : c + 7].mean())
    return out


@pytest.mark.parametrize(
    ("wavelength_nm", "rotator_deg", "pol"), [(550.0, 0.0, 0), (650.0, 45.0, 1)]
)
def test_measured_pads_recover_the_truth(
    chip: VirtualChip, truth: Truth, wavelength_nm: float, rotator_deg: float, pol: int
) -> None:
    """Dark + flat correction of rendered frames gives the truth to 1e-3 at the pad centres.

    The residual is shot noise over 8 frames x 169 pixels (~3e-4) plus the polariser's 1e-3
    extinction leak; a wrong passband, polarisation mapping or light path is off by >> 1e-2.
    """
    with microscope(chip) as mic:
        measured = measured_transmission(mic, wavelength_nm, rotator_deg, truth)
    band = int(np.argmin(np.abs(truth.band_center_nm - wavelength_nm)))
    errors = np.array([v - truth.transmission[row, pol, band] for row, v in measured.items()])
    assert len(errors) == 16
    assert np.abs(errors).max() < 1e-3, errors
    # The other polarisation differs for these asymmetric designs: the test can tell them apart.
    other = np.array([v - truth.transmission[row, 1 - pol, band] for row, v in measured.items()])
    assert np.abs(other).max() > 1e-2


def test_same_key_same_frame_in_a_fresh_microscope(chip: VirtualChip) -> None:
    with microscope(chip) as first, microscope(chip) as second:
        state = OpticalState(600.0, NARROW, 0.0, array_centre_stage(first))
        kwargs = {"exposure_s": 0.02, "gain_db": 0.0, "bit_depth": 12}
        a = first.render("sample", state, frame=3, **kwargs)  # type: ignore[arg-type]
        b = second.render("sample", state, frame=3, **kwargs)  # type: ignore[arg-type]
        c = first.render("sample", state, frame=4, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(float) - c).mean() > 1.0  # fresh noise for the next frame


def test_shot_and_read_noise_follow_the_emva_model(chip: VirtualChip) -> None:
    """Frame-to-frame variance on glass = K^2 (mu_e + read^2) within 5 % (60 frames, ~1k px)."""
    with microscope(chip, optics=MicroscopeOptics(kohler_falloff=0.0, kohler_tilt=0.0)) as mic:
        sensor = mic.sensors["sample"]
        state = OpticalState(600.0, NARROW, 0.0, (*mic.chip_to_stage(-40.0, -40.0), 0.0))
        frames = np.array(
            [
                mic.render("sample", state, exposure_s=0.01, gain_db=0.0, bit_depth=16, frame=i)
                for i in range(60)
            ],
            dtype=np.float64,
        )[:, 40:72, 40:72]
        k = sensor.gain_dn_per_e(0.0, 16)
        black = sensor.config.offset_fraction * 65535
        mu_e = (frames.mean(axis=0) - black) / k
        expected = k**2 * (mu_e + sensor.config.read_noise_e**2)
        measured = frames.var(axis=0, ddof=1)
    assert 2000 < mu_e.mean() < 30000  # a meaningful signal level, below saturation
    assert measured.mean() / expected.mean() == pytest.approx(1.0, abs=0.05)


def test_saturation_clips_at_full_scale_and_darks_show_hot_pixels(
    steady: VirtualMicroscope,
) -> None:
    stage = array_centre_stage(steady)
    bright = OpticalState(700.0, BandwidthMode.WIDE, 0.0, stage)
    image = steady.render("sample", bright, exposure_s=1.0, gain_db=0.0, bit_depth=12, frame=0)
    assert image.max() == 4095 and (image == 4095).mean() > 0.5
    dark_state = replace(bright, mode=BandwidthMode.BLACK)
    dark = steady.render("sample", dark_state, exposure_s=2.0, gain_db=0.0, bit_depth=12, frame=0)
    hot = steady.sensors["sample"].hot_pixels
    median = float(np.median(dark))
    assert median < 0.05 * 4095  # a dark frame is dark
    if len(hot):
        assert all(dark[r, c] > median + 100 for r, c in hot)
    assert (dark > median + 100).sum() <= len(hot) + 2


def test_pads_sit_where_the_pixel_map_puts_them(steady: VirtualMicroscope) -> None:
    """The centroid of a pad's contrast lands on pixel_map's prediction within 0.2 px."""
    stage = array_centre_stage(steady)
    state = OpticalState(550.0, NARROW, 0.0, stage)
    rate = steady.sample_rate(state)
    assert rate is not None
    glass_state = replace(state, stage_um=(*steady.chip_to_stage(-40.0, -40.0), 0.0))
    glass = steady.sample_rate(glass_state)
    assert glass is not None
    contrast = 1.0 - rate / glass
    pixels = steady.pixel_map(stage)
    m = steady.chip.manifest
    k = m.arrays.name.index("A0R0")
    # Corners of the whole array: the array's contrast footprint must start and end there.
    corners_u = [m.arrays.origin_x_um[k], m.arrays.origin_x_um[k] + 4 * m.pad_pitch_um]
    rows, cols = pixels.to_pixel(np.array(corners_u), np.full(2, m.arrays.origin_y_um[k] + 12.0))
    row = round(float(rows.mean()))
    profile = np.abs(contrast[row])
    inside = np.flatnonzero(profile > 0.5 * np.median(profile[profile > 0.05]))
    assert abs(inside[0] - cols[0]) < 1.5 and abs(inside[-1] - cols[1]) < 1.5
    # Sub-pixel: the half-contrast crossing of the outer pads' edges sits on the prediction.
    for edge, plateau_col in ((cols[0], cols[0] + 12), (cols[1], cols[1] - 12)):
        half = 0.5 * profile[round(plateau_col)]
        index = np.arange(round(edge) - 4, round(edge) + 5)
        values = profile[index]
        order = np.argsort(values)
        crossing = np.interp(half, values[order], index[order].astype(float))
        assert abs(crossing - edge) < 0.2, (crossing, edge)


def test_edges_are_area_weighted_and_blur_grows_with_defocus(chip: VirtualChip) -> None:
    # A pixel straddling an edge sees the covered fraction (no blur: sigma -> 0).
    assert box_blur_profile(np.array([0.0]), 0.0, 10.0, 1.0, 0.0)[0] == pytest.approx(0.5)
    assert box_blur_profile(np.array([0.25]), 0.0, 10.0, 1.0, 0.0)[0] == pytest.approx(0.75)
    optics = MicroscopeOptics()
    assert optics.psf_sigma_um(550.0, 5.0) > 2 * optics.psf_sigma_um(550.0, 0.0)

    def edge_width(z_um: float) -> float:
        with microscope(chip) as mic:
            x, y, _ = array_centre_stage(mic)
            rate = mic.sample_rate(OpticalState(550.0, NARROW, 0.0, (x, y, z_um)))
            assert rate is not None
            row = rate[80] / rate[80].max()
            step = np.abs(np.diff(row))
            return float((step > 0.02 * step.max()).sum())

    assert edge_width(1.0) > edge_width(0.0)


def test_both_cameras_see_the_same_lamp_flicker(chip: VirtualChip) -> None:
    """Sample/reference ratio cancels the lamp: its spread over frames is far below the lamp's."""
    lamp = LampConfig(drift_rms=0.0, flicker_rms=0.02)
    with microscope(chip, lamp=lamp) as mic:
        state = OpticalState(650.0, NARROW, 0.0, (*mic.chip_to_stage(-40.0, -40.0), 0.0))
        sample, reference = [], []
        for frame in range(30):
            kw = {"exposure_s": 0.01, "gain_db": 0.0, "bit_depth": 16, "frame": frame}
            sample.append(mic.render("sample", state, **kw).mean())  # type: ignore[arg-type]
            reference.append(mic.render("reference", state, **kw).mean())  # type: ignore[arg-type]
    s, r = np.array(sample), np.array(reference)
    assert s.std() / s.mean() > 0.01  # the lamp flickers ~2 %
    ratio = s / r
    assert ratio.std() / ratio.mean() < 0.2 * s.std() / s.mean()


def test_lamp_drift_is_keyed_by_tile_and_band(chip: VirtualChip) -> None:
    with microscope(chip, lamp=LampConfig(drift_rms=0.01, flicker_rms=0.0)) as mic:
        tiles = [(k, 0) for k in range(200)]
        offsets = np.array([mic.lamp.drift(t, 10.0) for t in tiles])
        assert offsets.std() == pytest.approx(0.01, rel=0.25)
        curve = np.array([mic.lamp.drift((1, 2), s) for s in np.arange(58.0)])
        assert np.abs(np.diff(curve)).mean() < 0.5 * curve.std() * np.sqrt(2)  # smooth, not white
        assert mic.lamp.drift((1, 2), 5.0) == mic.lamp.drift((1, 2), 5.0)


def test_the_reference_camera_sees_the_passband_not_the_sample(steady: VirtualMicroscope) -> None:
    on_array = OpticalState(600.0, NARROW, 0.0, array_centre_stage(steady))
    on_glass = replace(on_array, stage_um=(*steady.chip_to_stage(-40.0, -40.0), 0.0))
    kw = {"exposure_s": 0.02, "gain_db": 0.0, "bit_depth": 16, "frame": 0}
    a = steady.render("reference", on_array, **kw).astype(float)  # type: ignore[arg-type]
    b = steady.render("reference", on_glass, **kw).astype(float)  # type: ignore[arg-type]
    assert a.mean() == pytest.approx(b.mean(), rel=2e-3)
    blue = steady.render("reference", replace(on_glass, wavelength_nm=460.0), **kw)  # type: ignore[arg-type]
    ratio = steady.lamp.relative_light(460.0, NARROW) / steady.lamp.relative_light(600.0, NARROW)
    black = steady.sensors["reference"].config.offset_fraction * 65535
    assert (blue.mean() - black) / (b.mean() - black) == pytest.approx(ratio, rel=0.02)
    assert ratio < 0.5  # the blue end of a 3200 K lamp through the filter is dim


def test_sim_camera_is_a_camera_and_counts_frames_per_state(chip: VirtualChip) -> None:
    kurios, ell14 = KuriosEmulator(time_scale=1e-3), Ell14Emulator(time_scale=1e-3)
    stage = Ms2000Emulator(Ms2000EmulatorConfig(), time_scale=1e-3)
    with microscope(chip) as mic:
        camera = SimCamera(mic, EmulatorStates(kurios, ell14, stage), "sample", time_scale=0.0)
        assert isinstance(camera, Camera)
        camera.exposure_s = 0.02
        first = camera.grab(2)
        again = SimCamera(mic, EmulatorStates(kurios, ell14, stage), "sample", time_scale=0.0)
        again.exposure_s = 0.02
        np.testing.assert_array_equal(again.grab(2).data, first.data)  # same key, same frames
        second = camera.grab(2)  # frames 2 and 3 of the same state: new noise
        assert not np.array_equal(second.data, first.data)
        assert abs(second.data.mean() - first.data.mean()) < 0.01 * first.data.mean()
        camera.roi = (10, 20, 32, 16)
        assert camera.grab(1).data.shape == (16, 32)
        with pytest.raises(ValueError, match=r"exposure 20 s is outside 1e-05\.\.10 s"):
            camera.exposure_s = 20.0
        with pytest.raises(ValueError, match="does not fit"):
            camera.roi = (150, 0, 32, 32)


def test_emulator_state_drives_the_render(chip: VirtualChip) -> None:
    """Tuning the emulated filter to BLACK, or moving the stage, changes what the camera sees."""
    kurios, ell14 = KuriosEmulator(time_scale=1e-3), Ell14Emulator(time_scale=1e-3)
    stage = Ms2000Emulator(Ms2000EmulatorConfig(), time_scale=1e-3)
    states = EmulatorStates(kurios, ell14, stage)
    state = states.optical_state()
    assert state.wavelength_nm == kurios.wavelength_nm
    assert state.rotator_deg == ell14.angle_deg
    assert state.stage_um == stage.position_um
    assert replace(state, mode=BandwidthMode.BLACK).key() != state.key()


def test_the_real_basler_driver_grabs_rendered_frames(chip: VirtualChip, tmp_path: Path) -> None:
    """Through pylon's emulation at Mono12: the driver's average equals the renderer's frames."""
    kurios, ell14 = KuriosEmulator(time_scale=1e-3), Ell14Emulator(time_scale=1e-3)
    stage = Ms2000Emulator(Ms2000EmulatorConfig(), time_scale=1e-3)
    states = EmulatorStates(kurios, ell14, stage)
    with microscope(chip) as mic:
        # A grab that must succeed: 10 s beyond the exposure, more than a busy machine can take.
        driver = BaslerCamera.open("0815-0000", timeout_s=2.0, readout_margin_s=10.0)
        feed = PylonImageFeed(driver, mic, states, "sample", tmp_path / "feed")
        try:
            assert isinstance(feed, Camera)
            feed.bit_depth = 12
            feed.exposure_s = 0.02
            grabbed = feed.grab(3)
            direct = SimCamera(mic, states, "sample", bit_depth=12, time_scale=0.0)
            direct.exposure_s = feed.exposure_s
            expected = direct.grab(3)
        finally:
            feed.close()
    assert grabbed.frames_averaged == 3
    np.testing.assert_array_equal(grabbed.data, expected.data)

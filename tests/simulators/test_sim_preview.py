"""``metascan sim preview`` and the measurement behind its spectra plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, write_manifest
from simulators.microscope.microscope import OpticalState, VirtualMicroscope
from simulators.microscope.preview import (
    GLASS_FILL,
    bare_glass_center_um,
    glass_exposure_s,
    preview_config,
    render_array_preview,
)
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth

if TYPE_CHECKING:
    from conftest import Cli


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """One 6x6 array in two replicas with 2x2 companions: a 384 px preview frame."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=6, cols=6, replicas=2, companion_size=2)
    return plan_chip(generate(36, seed=3), config)


@pytest.fixture
def manifest_path(manifest: ChipManifest, tmp_path: Path) -> Path:
    path = tmp_path / "chip.h5"
    write_manifest(path, manifest)
    return path


def test_preview_writes_three_images(cli: Cli, manifest_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "previews"
    code, stdout, err = cli(
        "sim", "preview", "--manifest", str(manifest_path), "--output", str(out),
        "--array", "A0R1", "--wavelength", "600", "--pads", "4",
    )  # fmt: skip
    assert code == 0, err
    names = {"frame_A0R1_600nm.png", "rgb_A0R1.png", "spectra_A0R1.png"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        with Image.open(out / name) as image:
            image.verify()  # a complete, valid PNG
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 400 <= width <= 2500 and 300 <= height <= 2500, (name, image.size)
            assert len(np.unique(np.asarray(image.convert("L")))) > 20  # not a blank canvas
    assert "384x384 px sensor" in stdout


def test_bad_array_is_one_line_listing_the_arrays(
    cli: Cli, manifest_path: Path, tmp_path: Path
) -> None:
    code, _, err = cli(
        "sim", "preview", "-m", str(manifest_path), "-o", str(tmp_path / "p"), "--array", "A9R9"
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:")
    assert "A9R9" in err and all(a in err for a in ("A0R0", "A0R1", "A0C"))
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("wavelength", ["419", "730.5", "1000"])
def test_wavelength_outside_the_filter_is_one_line(
    cli: Cli, manifest_path: Path, tmp_path: Path, wavelength: str
) -> None:
    code, _, err = cli(
        "sim", "preview", "-m", str(manifest_path), "-o", str(tmp_path / "p"),
        "--wavelength", wavelength,
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "[420, 730] nm" in err and wavelength in err


def test_rendered_spectra_recover_the_truth(manifest: ChipManifest) -> None:
    """Through noise, lamp drift and flicker, blur, Koehler fall-off, PRNU and extinction.

    Shot noise of one frame at 70 % of a 32,700 e- well, averaged over a pad's ~144 core
    pixels, is ~1e-4 of the signal; extinction 1e-3 mixes in up to 1e-3 of the other
    polarisation; the neighbours' blurred edges sit ~3.8 sigma from the core. 0.005 leaves
    room for all of it, and is below what skipping the reference-camera lamp correction (1 %
    rms drift between the flat and the array, ~0.013-0.019 here) or the dark subtraction (a 1 %
    black level, ~0.013) costs.
    """
    chip = VirtualChip(manifest, AnalyticModel(), FabricationConfig(seed=2))
    centers = np.array([450.0, 530.0, 610.0, 730.0])
    truth = make_truth(chip, centers)
    with VirtualMicroscope(chip, preview_config(manifest, "A0R0", seed=2)) as microscope:
        preview = render_array_preview(microscope, truth, "A0R0", pads=5, centers_nm=centers)
        # Bare glass fills ~70 % of the well at the chosen exposure.
        wl = 530.0
        t = glass_exposure_s(microscope, wl)
        sx, sy = microscope.chip_to_stage(*bare_glass_center_um(microscope))
        state = OpticalState(wl, BandwidthMode.NARROW, 0.0, (sx, sy, 0.0))
        rate = microscope.sample_rate(state)
        assert rate is not None
        centre = rate[150:230, 150:230].mean() * t / microscope.config.sensor.full_well_e
        assert abs(centre - GLASS_FILL) < 0.02
    assert preview.measured.shape == (5, 2, 4) == preview.truth.shape
    assert len(set(preview.pad_labels)) == 5
    np.testing.assert_allclose(preview.measured, preview.truth, atol=0.005)
    # The pads differ from one another by much more than the tolerance: the check has teeth.
    assert np.ptp(preview.truth[:, 0, :], axis=0).max() > 0.1
    # False colour: bare glass (a frame corner) is white, a pad is not.
    assert preview.rgb[:20, 180:200].min() > 0.95
    assert preview.rgb.shape == (384, 384, 3)
    assert preview.rgb[150:250, 150:250].mean() < 0.9

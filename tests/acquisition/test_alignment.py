"""Chip-to-stage alignment from fiducials: labels, the fit, its residual, refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from acquisition.alignment import align_from_config, fit_chip_to_stage, resolve_fiducials
from acquisition.scan_config import AlignmentConfig, FiducialPosition
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, Role
from simulators.simulated_bench import (
    fiducial_stage_positions as simulated_fiducial_stage_positions,
)

ANGLE = math.radians(0.4)


def mounting(u: float, v: float) -> tuple[float, float]:
    """A chip rotated 0.4 degrees and shifted, with a 0.2 % stage scale error in x."""
    return (
        1.002 * (math.cos(ANGLE) * u - math.sin(ANGLE) * v) + 1234.0,
        math.sin(ANGLE) * u + math.cos(ANGLE) * v - 567.0,
    )


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    config = ChipConfig(thickness_nm=178, arrays=1, rows=4, cols=4, replicas=2, companion_size=2)
    return plan_chip(generate(20, seed=5), config)


def test_fiducials_are_named_by_array_and_corner(manifest: ChipManifest) -> None:
    points = manifest.fiducials()
    assert len(points) == int(np.count_nonzero(manifest.pads.role == Role.FIDUCIAL))
    assert len(points) == 4 * len(manifest.arrays.name)
    for name in manifest.arrays.name:
        mine = {p.corner: p for p in points if p.array == name}
        assert set(mine) == {"lower_left", "lower_right", "upper_left", "upper_right"}
        assert mine["lower_left"].x_um < mine["lower_right"].x_um
        assert mine["lower_left"].y_um < mine["upper_left"].y_um
        assert mine["upper_right"].label == f"{name}:upper_right"
        for p in mine.values():
            assert manifest.pads.role[p.index] == Role.FIDUCIAL
            assert (manifest.pads.x_um[p.index], manifest.pads.y_um[p.index]) == (p.x_um, p.y_um)


def test_simulated_positions_recover_the_mounting(manifest: ChipManifest) -> None:
    chip, stage, labels = simulated_fiducial_stage_positions(manifest, mounting, 0.0)
    fit = fit_chip_to_stage(chip, stage, labels=labels)
    assert fit.max_residual < 1e-6
    pad = (float(manifest.pads.x_um[0]), float(manifest.pads.y_um[0]))
    assert np.allclose(fit.transform.apply(pad), mounting(*pad), atol=1e-6)
    noisy = simulated_fiducial_stage_positions(manifest, mounting, 0.3, seed=1)
    fit = fit_chip_to_stage(noisy[0], noisy[1])
    assert 0.05 < fit.rms_residual < 0.6
    assert np.allclose(fit.transform.apply(pad), mounting(*pad), atol=1.0)
    again = simulated_fiducial_stage_positions(manifest, mounting, 0.3, seed=1)
    assert np.array_equal(noisy[1], again[1])  # keyed by the seed


def test_a_bad_fiducial_is_refused_by_name(manifest: ChipManifest) -> None:
    chip, stage, labels = simulated_fiducial_stage_positions(manifest, mounting, 0.0)
    stage[5] += (9.0, -4.0)
    with pytest.raises(ValueError, match=f"fiducial {labels[5]}") as info:
        fit_chip_to_stage(chip, stage, max_residual_um=2.0, labels=labels)
    assert "exceeds 2 µm" in str(info.value)
    assert fit_chip_to_stage(chip, stage, max_residual_um=20.0).max_residual > 2.0
    with pytest.raises(ValueError, match=">= 3 fiducials"):
        fit_chip_to_stage(chip[:2], stage[:2])


def test_config_fiducials_by_name_and_by_index(manifest: ChipManifest) -> None:
    points = manifest.fiducials()
    ll = next(p for p in points if p.label == "A0R0:lower_left")
    ur = next(p for p in points if p.label == "A0R1:upper_right")
    far = next(p for p in points if p.label == "A0C:upper_left")
    given = (
        FiducialPosition(array="A0R0", corner="lower_left", x_um=0.0, y_um=0.0),
        FiducialPosition(index=ur.index, x_um=0.0, y_um=0.0),
        FiducialPosition(array="A0C", corner="upper_left", x_um=0.0, y_um=0.0),
    )
    measured = tuple(
        g.model_copy(update=dict(zip(("x_um", "y_um"), mounting(p.x_um, p.y_um), strict=True)))
        for g, p in zip(given, (ll, ur, far), strict=True)
    )
    chip, stage, labels = resolve_fiducials(manifest, measured)
    assert labels == ["A0R0:lower_left", "A0R1:upper_right", "A0C:upper_left"]
    assert np.allclose(stage, [mounting(*xy) for xy in chip])
    fit = align_from_config(manifest, AlignmentConfig(fiducials=measured))
    assert fit.max_residual < 1e-6
    with pytest.raises(ValueError, match="no fiducial at Z9:lower_left; arrays are"):
        resolve_fiducials(
            manifest, [FiducialPosition(array="Z9", corner="lower_left", x_um=0, y_um=0)]
        )
    with pytest.raises(ValueError, match="index 0 is not a fiducial row"):
        resolve_fiducials(manifest, [FiducialPosition(index=0, x_um=0, y_um=0)])


def test_automatic_needs_the_simulator(manifest: ChipManifest) -> None:
    with pytest.raises(ValueError, match="only on the simulated bench"):
        align_from_config(manifest, AlignmentConfig(automatic=True))
    with pytest.raises(ValueError, match="gives no fiducials"):
        align_from_config(manifest, AlignmentConfig())

    def locate(m: ChipManifest, sd_um: float, seed: int) -> tuple[Any, Any, list[str]]:
        return simulated_fiducial_stage_positions(m, mounting, sd_um, seed)

    fit = align_from_config(manifest, AlignmentConfig(automatic=True), locate)
    assert fit.rms_residual < 1.0

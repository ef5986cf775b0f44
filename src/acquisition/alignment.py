"""Chip-to-stage alignment: manifest µm → stage µm from three or more fiducials.

Pads are found through the manifest and this transform, never by hand. A full affine (not a
similarity) absorbs a stage whose axes are not quite square or not quite equally calibrated; the
residual says whether that was enough, and a fit whose residual exceeds the caller's threshold
is refused rather than used to aim at pads a few µm wide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from acquisition.scan_config import AlignmentConfig, Corner, FiducialPosition
from layout.affine import AffineFit, fit_affine
from layout.manifest import ChipManifest, Role

log = logging.getLogger(__name__)

DEFAULT_MAX_RESIDUAL_UM = 2.0


@dataclass(frozen=True)
class FiducialPoint:
    """A fiducial cross of the manifest: its pad-table row, the array it frames, and where."""

    index: int
    array: str
    corner: Corner
    x_um: float
    y_um: float

    @property
    def label(self) -> str:
        return f"{self.array}:{self.corner}"


def fiducial_points(manifest: ChipManifest) -> list[FiducialPoint]:
    """Every fiducial in pad-table order, named by the array it frames and its corner (found by
    position relative to the array's centre, so it does not rely on the order of placement)."""
    arrays = manifest.arrays
    pads = manifest.pads
    by_key = {(int(arrays.array_id[k]), int(arrays.replica[k])): k for k in range(len(arrays.name))}
    points = []
    for i in np.flatnonzero(pads.role == Role.FIDUCIAL):
        key = (int(pads.array_id[i]), int(pads.replica[i]))
        if key not in by_key:
            raise ValueError(f"fiducial at pad-table row {i} belongs to no array {key}")
        k = by_key[key]
        cx = arrays.origin_x_um[k] + arrays.cols[k] * manifest.pad_pitch_um / 2
        cy = arrays.origin_y_um[k] + arrays.rows[k] * manifest.pad_pitch_um / 2
        x, y = float(pads.x_um[i]), float(pads.y_um[i])
        corner: Corner = (
            ("upper_" if y > cy else "lower_") + ("right" if x > cx else "left")  # type: ignore[assignment]
        )
        points.append(FiducialPoint(int(i), arrays.name[k], corner, x, y))
    return points


def resolve_fiducials(
    manifest: ChipManifest, given: Sequence[FiducialPosition]
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    """Chip and stage points, and labels, of the fiducials a config lists."""
    known = fiducial_points(manifest)
    by_index = {p.index: p for p in known}
    by_name = {(p.array, p.corner): p for p in known}
    chip, stage, labels = [], [], []
    for entry in given:
        if entry.index is not None:
            point = by_index.get(entry.index)
            if point is None:
                raise ValueError(
                    f"fiducial index {entry.index} is not a fiducial row of the manifest; "
                    f"fiducial rows are {sorted(by_index)[:8]}{'...' if len(by_index) > 8 else ''}"
                )
        else:
            assert entry.array is not None and entry.corner is not None  # the model checks this
            point = by_name.get((entry.array, entry.corner))
            if point is None:
                raise ValueError(
                    f"no fiducial at {entry.array}:{entry.corner}; arrays are "
                    f"{sorted({p.array for p in known})}"
                )
        chip.append((point.x_um, point.y_um))
        stage.append((entry.x_um, entry.y_um))
        labels.append(point.label)
    if len(set(labels)) != len(labels):
        raise ValueError(f"a fiducial is listed twice: {labels}")
    return np.array(chip, float).reshape(-1, 2), np.array(stage, float).reshape(-1, 2), labels


def fit_chip_to_stage(
    chip_xy_um: ArrayLike,
    stage_xy_um: ArrayLike,
    max_residual_um: float = DEFAULT_MAX_RESIDUAL_UM,
    labels: Sequence[str] | None = None,
) -> AffineFit:
    """Least-squares affine from chip µm to stage µm; refused when the largest residual exceeds
    ``max_residual_um`` (a mis-centred or mis-named fiducial), naming the worst one."""
    chip = np.asarray(chip_xy_um, dtype=np.float64)
    if chip.ndim != 2 or chip.shape[0] < 3:
        raise ValueError(f"alignment needs >= 3 fiducials, got {chip.shape[0] if chip.ndim else 0}")
    fit = fit_affine(chip, stage_xy_um)
    if fit.max_residual > max_residual_um:
        worst = int(np.argmax(np.hypot(fit.residuals[:, 0], fit.residuals[:, 1])))
        name = labels[worst] if labels is not None else f"#{worst}"
        raise ValueError(
            f"alignment residual {fit.max_residual:.2f} µm (fiducial {name}; rms "
            f"{fit.rms_residual:.2f} µm) exceeds {max_residual_um:g} µm: re-centre that fiducial"
        )
    log.info("chip-to-stage fit: rms %.3f µm, max %.3f µm", fit.rms_residual, fit.max_residual)
    return fit


def simulated_fiducial_stage_positions(
    manifest: ChipManifest,
    chip_to_stage: Callable[[float, float], tuple[float, float]],
    error_sd_um: float = 0.3,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    """What a user would read off the stage centring each fiducial of the simulated bench: the
    simulator's true mounting plus a Gaussian centring error. Returns chip points, stage points
    and labels, ready for :func:`fit_chip_to_stage`."""
    if error_sd_um < 0:
        raise ValueError(f"error_sd_um={error_sd_um} must be >= 0")
    points = fiducial_points(manifest)
    if len(points) < 3:
        raise ValueError(f"the manifest has {len(points)} fiducials; alignment needs >= 3")
    rng = np.random.default_rng(seed)
    chip = np.array([(p.x_um, p.y_um) for p in points], dtype=np.float64)
    stage = np.array([chip_to_stage(p.x_um, p.y_um) for p in points], dtype=np.float64)
    stage += rng.normal(0.0, error_sd_um, stage.shape) if error_sd_um > 0 else 0.0
    return chip, stage, [p.label for p in points]


def align_from_config(
    manifest: ChipManifest,
    alignment: AlignmentConfig,
    simulated_chip_to_stage: Callable[[float, float], tuple[float, float]] | None = None,
) -> AffineFit:
    """The chip-to-stage fit a config asks for: its listed fiducials, or (``automatic``) the
    simulated bench's, which needs ``simulated_chip_to_stage`` (the simulator's true mounting)."""
    if alignment.automatic:
        if simulated_chip_to_stage is None:
            raise ValueError(
                "[alignment] automatic = true works only on the simulated bench; "
                "list three or more measured fiducials instead"
            )
        chip, stage, labels = simulated_fiducial_stage_positions(
            manifest, simulated_chip_to_stage, alignment.simulated_error_sd_um, alignment.seed
        )
    elif alignment.is_given:
        chip, stage, labels = resolve_fiducials(manifest, alignment.fiducials)
    else:
        raise ValueError(
            "[alignment] gives no fiducials: list >= 3 as {array, corner, x_um, y_um} "
            "(or {index, x_um, y_um}), or set automatic = true on the simulated bench"
        )
    return fit_chip_to_stage(chip, stage, alignment.max_residual_um, labels)

"""Chip-to-stage alignment: manifest µm → stage µm from three or more fiducials.

Pads are found through the manifest and this transform, never by hand. A full affine (not a
similarity) absorbs a stage whose axes are not quite square or not quite equally calibrated; the
residual says whether that was enough, and a fit whose residual exceeds the caller's threshold
is refused rather than used to aim at pads a few µm wide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from acquisition.scan_config import AlignmentConfig, FiducialPosition
from layout.affine import AffineFit, fit_affine
from layout.manifest import ChipManifest, FiducialReadings

log = logging.getLogger(__name__)

DEFAULT_MAX_RESIDUAL_UM = 2.0


def resolve_fiducials(
    manifest: ChipManifest, given: Sequence[FiducialPosition]
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    """Chip and stage points, and labels, of the fiducials a config lists."""
    known = manifest.fiducials()
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


def align_from_config(
    manifest: ChipManifest,
    alignment: AlignmentConfig,
    locate: Callable[[ChipManifest, float, int], FiducialReadings] | None = None,
) -> AffineFit:
    """The chip-to-stage fit a config asks for: its listed fiducials, or (``automatic``) those
    the bench reads itself through ``locate`` (manifest, centring error sd, seed) -> chip
    points, stage points and labels; the simulated bench offers one (``acquisition.bench``)."""
    if alignment.automatic:
        if locate is None:
            raise ValueError(
                "[alignment] automatic = true works only on the simulated bench; "
                "list three or more measured fiducials instead"
            )
        chip, stage, labels = locate(manifest, alignment.simulated_error_sd_um, alignment.seed)
    elif alignment.is_given:
        chip, stage, labels = resolve_fiducials(manifest, alignment.fiducials)
    else:
        raise ValueError(
            "[alignment] gives no fiducials: list >= 3 as {array, corner, x_um, y_um} "
            "(or {index, x_um, y_um}), or set automatic = true on the simulated bench"
        )
    return fit_chip_to_stage(chip, stage, alignment.max_residual_um, labels)

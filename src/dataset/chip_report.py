"""What an inverse-designed chip was asked, promised and measured to be, pad by pad.

Three colours (or spectra) per pad: the **target** (the map's pixel or spectrum), the
**promised** one (the model's prediction for the design placed there, from the chip-design
record) and the **measured** one (the scanned pad's extracted spectrum, through the same
colorimetry). Three differences follow: measured-target is what the user got, promised-target
is what the model thought it could reach (the gamut and the search), measured-promised is the
model's own error on designs it chose. Only unflagged pads count; flagged ones are drawn grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataset.array_spectra_file import ArraySpectra
from dataset.chip_design_file import ChipDesign
from dataset.colorimetry import Colorimetry, delta_e, lab_to_srgb
from dataset.targets_file import weighted_mse
from layout.manifest import ChipManifest, Role


@dataclass(frozen=True, eq=False)
class PadComparison:
    """Measured pads of the designed arrays (P rows, only pads made for a target)."""

    replica: NDArray[np.int32]
    row: NDArray[np.int32]
    col: NDArray[np.int32]
    target: NDArray[np.int64]  # row of the design record's targets
    designed: NDArray[np.int64]  # row of its designed table
    usable: NDArray[np.bool_]  # unflagged and finite
    measured_spectra: NDArray[np.float64]  # (P, 2, W)
    measured_lab: NDArray[np.float64]  # (P, 3)
    delta_e_measured: NDArray[np.float64]  # (P,) measured vs target
    delta_e_promised: NDArray[np.float64]  # (P,) promised vs target
    delta_e_model: NDArray[np.float64]  # (P,) measured vs promised
    mse_measured: NDArray[np.float64] | None  # spectral maps: measured vs target
    mse_promised: NDArray[np.float64] | None  # spectral maps: promised vs target
    mse_model: NDArray[np.float64]  # (P,) measured vs promised spectrum, unweighted


def compare_pads(
    manifest: ChipManifest, design: ChipDesign, spectra: ArraySpectra
) -> PadComparison:
    """Join measured pads to the manifest's targets and the record's promises; refuses spectra,
    records and manifests of different chips, and another band grid."""
    sha = manifest.content_sha256()
    if design.manifest_sha256 != sha:
        raise ValueError(
            "the chip-design record was written for another chip (manifest_sha256 "
            f"{design.manifest_sha256[:12]}…, this manifest {sha[:12]}…)"
        )
    if spectra.manifest_sha256 != sha:
        raise ValueError(
            f"the spectra ({spectra.array_name}) were measured on another chip "
            f"(manifest_sha256 {spectra.manifest_sha256[:12]}…, this manifest {sha[:12]}…)"
        )
    if manifest.pad_target is None:
        raise ValueError(f"chip {manifest.chip_id} was not designed for targets (no pads/target)")
    if spectra.wavelength_nm.shape != design.wavelength_nm.shape or not np.allclose(
        spectra.wavelength_nm, design.wavelength_nm, atol=1e-6
    ):
        raise ValueError("the spectra are on other bands than the chip-design record")
    pads = manifest.pads
    dataset = np.flatnonzero((pads.role == Role.DATASET) & (manifest.pad_target >= 0))
    index = {
        (int(pads.array_id[i]), int(pads.replica[i]), int(pads.row[i]), int(pads.col[i])): i
        for i in dataset
    }
    measured_rows: list[int] = []
    pad_rows: list[int] = []
    for j in range(len(spectra.design_id)):
        if spectra.role[j] != Role.DATASET:
            continue
        key = (
            int(spectra.array_id[j]),
            int(spectra.replica[j]),
            int(spectra.row[j]),
            int(spectra.col[j]),
        )
        i = index.get(key)
        if i is not None:
            measured_rows.append(j)
            pad_rows.append(int(i))
    if not pad_rows:
        raise ValueError("no measured pad of the spectra is a designed pad of the chip")
    m = np.asarray(measured_rows)
    p = np.asarray(pad_rows)
    target = manifest.pad_target[p].astype(np.int64)
    designed = design.designed_row[target]
    if np.any(designed < 0):
        raise ValueError("the manifest places targets the chip-design record did not design")
    colours = Colorimetry(design.wavelength_nm, design.lamp_temperature_k)
    measured = spectra.transmission[m]
    usable = (spectra.flags[m] == 0) & np.all(np.isfinite(measured), axis=(1, 2))
    filled = np.where(np.isfinite(measured), measured, 0.0)
    lab = colours.lab_of_spectra(filled)
    promised_lab = design.promised_lab[designed]
    target_lab = design.target_lab[target]
    promised = design.promised_spectra[designed]
    mse_measured = mse_promised = None
    if design.kind == "spectrum":
        assert design.target_spectra is not None and design.target_weight is not None
        t, w = design.target_spectra[target], design.target_weight[target]
        mse_measured = weighted_mse(filled, t, w)
        mse_promised = weighted_mse(promised, t, w)
    return PadComparison(
        replica=spectra.replica[m],
        row=spectra.row[m],
        col=spectra.col[m],
        target=target,
        designed=designed,
        usable=usable,
        measured_spectra=filled,
        measured_lab=lab,
        delta_e_measured=delta_e(lab, target_lab),
        delta_e_promised=delta_e(promised_lab, target_lab),
        delta_e_model=delta_e(lab, promised_lab),
        mse_measured=mse_measured,
        mse_promised=mse_promised,
        mse_model=np.mean((filled - promised) ** 2, axis=(1, 2)),
    )


def _q(values: NDArray[np.float64]) -> dict[str, float]:
    if values.size == 0:
        return {"median": float("nan"), "q95": float("nan"), "max": float("nan")}
    return {
        "median": float(np.median(values)),
        "q95": float(np.quantile(values, 0.95)),
        "max": float(values.max()),
    }


def summarize(c: PadComparison, design: ChipDesign) -> dict[str, Any]:
    """Median / q95 / max of each difference over usable pads, and per designed target."""
    u = c.usable
    out: dict[str, Any] = {
        "kind": design.kind,
        "pads": int(u.size),
        "pads_usable": int(u.sum()),
        "delta_e2000": {
            "measured_vs_target": _q(c.delta_e_measured[u]),
            "promised_vs_target": _q(c.delta_e_promised[u]),
            "measured_vs_promised": _q(c.delta_e_model[u]),
        },
        "mse": {"measured_vs_promised_unweighted": _q(c.mse_model[u])},
        "colorimetry": {
            "lamp_temperature_k": design.lamp_temperature_k,
            "truncation": design.truncation,
        },
    }
    if c.mse_measured is not None and c.mse_promised is not None:
        out["mse"]["measured_vs_target"] = _q(c.mse_measured[u])
        out["mse"]["promised_vs_target"] = _q(c.mse_promised[u])
    per_target = []
    for t in np.unique(c.target):
        sel = u & (c.target == t)
        d = int(design.designed_row[t])
        entry: dict[str, Any] = {
            "target_id": design.target_id[t],
            "pads": int(np.count_nonzero(c.target == t)),
            "pads_usable": int(sel.sum()),
            "design_id": int(design.design_id[d]),
            "delta_e_promised": float(delta_e(design.promised_lab[d], design.target_lab[t])),
            "delta_e_measured_median": float(np.median(c.delta_e_measured[sel]))
            if sel.any()
            else float("nan"),
        }
        if c.mse_measured is not None:
            entry["mse_measured_median"] = (
                float(np.median(c.mse_measured[sel])) if sel.any() else float("nan")
            )
        per_target.append(entry)
    out["targets"] = per_target
    return out


def images(
    c: PadComparison, design: ChipDesign
) -> dict[int, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]:
    """Per replica, the (R, C, 3) sRGB target, promised and measured images (row 0 at the
    bottom, as on the chip); pads not measured or flagged are mid grey."""
    rows, cols = design.grid.shape
    out = {}
    target_rgb = (
        design.target_srgb.astype(np.float64) / 255.0
        if design.target_srgb is not None
        else lab_to_srgb(design.target_lab)
    )
    promised_rgb = lab_to_srgb(design.promised_lab)
    measured_rgb = lab_to_srgb(c.measured_lab)
    for rep in np.unique(c.replica):
        sel = c.replica == rep
        planes = [np.full((rows, cols, 3), 0.5) for _ in range(3)]
        r, col = c.row[sel], c.col[sel]
        planes[0][r, col] = target_rgb[c.target[sel]]
        planes[1][r, col] = promised_rgb[c.designed[sel]]
        good = c.usable[sel]
        planes[2][r[good], col[good]] = measured_rgb[sel][good]
        out[int(rep)] = (planes[0], planes[1], planes[2])
    return out

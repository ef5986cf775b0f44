"""One band of a tile hypercube as transmission relative to bare glass: the one definition.

Per pixel, with S the sample image, D the dark at its exposure e, F the flat (bare glass) and
D_F its dark at the flat's exposure e_F, R / R_F the reference-camera readings of the band and of
the flat's band with their darks RD / RD_F at the reference exposures e_R / e_RF::

    T = ((S - D) / e) / ((F - D_F) / e_F)  x  ((R_F - RD_F) / e_RF) / ((R - RD) / e_R)

The second factor divides out the lamp's change between the flat and this band (drift and
flicker, which both cameras see); ``reference=False`` leaves it out, to measure what it buys.
Dividing by exposures makes the ratio exact even where the flat and the band were taken at
different exposures. A band, dark or flat not completed reads NaN (``read_hypercube`` masks it),
so an incomplete scan gives NaN rather than a wrong number.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from numpy.typing import NDArray

EXPOSURE_RTOL = 1e-6


def _dark_at(darks: xr.DataArray, dim: str, exposure_s: float) -> xr.DataArray:
    """The dark taken at ``exposure_s`` (refused if none was)."""
    values = np.asarray(darks[dim].values, dtype=np.float64)
    k = int(np.argmin(np.abs(values - exposure_s)))
    if not np.isclose(values[k], exposure_s, rtol=EXPOSURE_RTOL, atol=0.0):
        raise ValueError(
            f"no {darks.name} at exposure {exposure_s:g} s (taken at "
            f"{', '.join(f'{v:g}' for v in values)} s)"
        )
    return darks.isel({dim: k})


def band_transmission(
    tile: xr.Dataset, flat: xr.Dataset, p: int, b: int, *, reference: bool = True
) -> NDArray[np.float64]:
    """(H, W) transmission relative to bare glass of band ``b`` at polarisation index ``p``;
    ``tile`` from :func:`dataset.hypercube_file.read_hypercube`, ``flat`` from
    :func:`dataset.hypercube_file.read_flat` of the same file."""
    e = float(tile.signal_exposure_s[p, b])
    e_f = float(flat.flat_exposure_s[p, b])
    signal = np.asarray(tile.signal[p, b].values, dtype=np.float64)
    dark = np.asarray(_dark_at(tile.dark, "dark_exposure_s", e).values, dtype=np.float64)
    glass = np.asarray(flat.flat[p, b].values, dtype=np.float64)
    glass_dark = np.asarray(_dark_at(flat.dark, "dark_exposure_s", e_f).values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: NDArray[np.float64] = ((signal - dark) / e) / ((glass - glass_dark) / e_f)
        if reference:
            out *= lamp_ratio(tile, flat, p, b)
    return out


def lamp_ratio(tile: xr.Dataset, flat: xr.Dataset, p: int, b: int) -> float:
    """Lamp brightness at the flat's band over that at the tile's band (the reference camera's
    dark-subtracted readings per second)."""
    e_r = float(tile.signal_reference_exposure_s[p, b])
    e_rf = float(flat.flat_reference_exposure_s[p, b])
    r = float(tile.signal_reference[p, b]) - float(
        _dark_at(tile.reference_dark, "reference_dark_exposure_s", e_r)
    )
    r_f = float(flat.flat_reference[p, b]) - float(
        _dark_at(flat.reference_dark, "reference_dark_exposure_s", e_rf)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((r_f / e_rf) / (r / e_r))

"""What a spectrum's numbers mean, written into every file that holds spectra.

Two conventions exist in this project, and they differ by the bare substrate's own transmission
(about 0.965 for fused silica, 3.5 % lost to the air-glass reflection):

* ``relative_to_substrate``: T_pad / T_bare substrate. What a microscope measures when it
  flat-fields on the bare glass beside the pads, so what array-spectra files, curated pairs and
  the public MOCLIP data hold. **Contract 5 (pairs) holds only this.**
* ``absolute_into_substrate``: the zero-order power transmitted from air into the substrate, as a
  spectral model computes it. Only the truth file stores it, next to the glass's own
  transmission, so its relative form is exact.

Every spectra-bearing file carries the attribute ``spectra_convention``; readers ask for the
convention they need and refuse another with one line, so a 3.5 % scale offset can never reach a
model or a metric unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

ATTRIBUTE = "spectra_convention"
RELATIVE = "relative_to_substrate"
ABSOLUTE = "absolute_into_substrate"
CONVENTIONS = {
    RELATIVE: "transmission relative to the bare substrate, T / T_substrate",
    ABSOLUTE: "absolute transmission from air into the substrate",
}


def check_known(convention: str, source: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"{source}: spectra_convention {convention!r} is not known; known: "
            f"{', '.join(CONVENTIONS)}"
        )
    return convention


def require(found: str, expected: str, source: str) -> None:
    """Refuse spectra of another convention than the one a reader works in."""
    check_known(found, source)
    if found != expected:
        raise ValueError(
            f"{source} holds spectra {found!r} ({CONVENTIONS[found]}), but {expected!r} "
            f"({CONVENTIONS[expected]}) is needed; they differ by the substrate's transmission "
            "(~0.965), so they are not mixed: regenerate the file with this version"
        )


def stored(attrs: Mapping[str, Any], source: str, legacy: str | None = None) -> str:
    """The convention a file's attributes declare. A file written before the attribute existed
    gets ``legacy`` (what that writer is known to have produced), or is refused without one."""
    value = attrs.get(ATTRIBUTE)
    if isinstance(value, bytes):
        value = value.decode()
    if value is None:
        if legacy is None:
            raise ValueError(
                f"{source} does not say which spectra convention it holds (no {ATTRIBUTE!r} "
                "attribute); regenerate it with this version"
            )
        return legacy
    return check_known(str(value), source)


def check_wavelengths(wavelength_nm: NDArray[np.float64], what: str = "wavelength_nm") -> None:
    """Refuse a band grid that is empty, not 1-D, non-finite, not positive or not increasing."""
    w = wavelength_nm
    if (
        w.ndim != 1
        or w.size == 0
        or not np.all(np.isfinite(w))
        or np.any(np.diff(w) <= 0)
        or w[0] <= 0
    ):
        raise ValueError(
            f"{what} must be a non-empty, positive, strictly increasing 1-D array of finite "
            f"numbers, got shape {w.shape}"
        )

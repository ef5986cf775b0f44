"""What every spectral model promises, and the input checks and size bias they share.

A spectral model maps N designs (plus film thickness and material) to zero-order transmission
of x- and y-polarized light at normal incidence from air, into a fused-silica half-space:
``(N, 2, W)`` float64 in [0, 1], axis 1 ordered ("x", "y"). It never knows about cameras,
filters or pads; the virtual chip and the pairs writer call it in batches.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layout.design import DesignLibrary

# The film MOCLIP fabricated; the name lives with the chip manifest, which records it.
from layout.material import DEFAULT_MATERIAL as DEFAULT_MATERIAL
from simulators.materials import get_material

FloatArray = NDArray[np.float64]

POLARIZATIONS = ("x", "y")
MOCLIP_WAVELENGTHS_NM: FloatArray = np.arange(450.0, 731.0, 10.0)
"""The 29 bands of the MOCLIP release (``wvl``): 450-730 nm every 10 nm."""


class SpectralModel(Protocol):
    """``spectra`` is the whole contract; ``name`` identifies the model in provenance."""

    @property
    def name(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """The model's settings, for provenance."""
        ...

    def spectra(
        self,
        library: DesignLibrary,
        wavelength_nm: ArrayLike,
        *,
        thickness_nm: float,
        material: str = DEFAULT_MATERIAL,
        size_bias_nm: float | ArrayLike = 0.0,
    ) -> FloatArray:
        """(N, 2, W) transmission in [0, 1]; ``size_bias_nm`` (scalar or (N,)) is added to
        every feature's width and height (edges move out by half of it; ring holes shrink)."""
        ...


def check_request(
    library: DesignLibrary,
    wavelength_nm: ArrayLike,
    thickness_nm: float,
    material: str,
    size_bias_nm: float | ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Validated ``(wavelength_nm (W,), size_bias_nm (N,))``; one-line ValueError otherwise."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"wavelength_nm must be a non-empty 1-D array, got shape {lam.shape}")
    if not (np.all(np.isfinite(lam)) and np.all(lam > 0)):
        raise ValueError("wavelength_nm must be finite and > 0")
    if not (np.isfinite(thickness_nm) and thickness_nm > 0):
        raise ValueError(f"thickness_nm={thickness_nm} must be finite and > 0")
    get_material(material)  # unknown names fail here, before any work
    raw = np.asarray(size_bias_nm, dtype=np.float64)
    if raw.ndim > 1 or (raw.ndim == 1 and raw.shape[0] != len(library)):
        raise ValueError(
            f"size_bias_nm must be a scalar or one value per design ({len(library)}), "
            f"got shape {raw.shape}"
        )
    bias = np.broadcast_to(raw, (len(library),)).copy()
    if not np.all(np.isfinite(bias)):
        raise ValueError("size_bias_nm must be finite")
    return lam, bias

"""Spectral models: designs -> zero-order transmission spectra, (N, 2, W) for x and y.

``get_model("analytic")`` is the fast documented approximation (tests, large synthetic sets);
``get_model("rcwa")`` solves Maxwell's equations with torcwa (optional extra ``rcwa``). The
rcwa module is imported only when asked for, so torch stays out of the analytic path.
"""

from __future__ import annotations

from typing import Any

from simulators.spectral.analytic import AnalyticConfig, AnalyticModel
from simulators.spectral.base import (
    DEFAULT_MATERIAL,
    MOCLIP_WAVELENGTHS_NM,
    POLARIZATIONS,
    SpectralModel,
)
from simulators.spectral.film import airy_stack, bare_substrate_transmission, film_transmission

MODEL_NAMES = ("analytic", "rcwa")

__all__ = [
    "DEFAULT_MATERIAL",
    "MOCLIP_WAVELENGTHS_NM",
    "MODEL_NAMES",
    "POLARIZATIONS",
    "AnalyticConfig",
    "AnalyticModel",
    "SpectralModel",
    "airy_stack",
    "bare_substrate_transmission",
    "film_transmission",
    "get_model",
]


def get_model(name: str, **options: Any) -> SpectralModel:
    """The model called ``name``, configured by ``options`` (fields of its config dataclass)."""
    try:
        if name == "analytic":
            return AnalyticModel(AnalyticConfig(**options))
        if name == "rcwa":
            from simulators.spectral.rcwa import RcwaConfig, RcwaModel

            return RcwaModel(RcwaConfig(**options))
    except TypeError as exc:  # an option the model does not have
        raise ValueError(f"spectral model {name!r}: {exc}") from None
    raise ValueError(f"unknown spectral model {name!r}; known: {', '.join(MODEL_NAMES)}")

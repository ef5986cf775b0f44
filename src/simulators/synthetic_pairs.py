"""Geometry-spectrum pairs straight from the generator and a spectral model, no imaging.

This lets the contrastive model be built and tested before a scan pipeline exists. Choices
that mirror the MOCLIP data: periods 300-600 nm (the generator's default), MOCLIP's film
(LPCVD amorphous silicon, ``a-Si``, by default) at its three thicknesses 150, 178 and 195 nm
(each design gets one, drawn at random, as a design sits on one chip), and the 29 bands
450-730 nm. The pairs file records the material (``Pairs.material``). Replicas and noise mimic what
measurement gives: each replica of a design is the same spectrum plus independent Gaussian
noise (seeded, clipped to [0, 1]), and replicas share ``design_id`` and therefore a split.
Spectra are relative to the bare substrate, as measured ones are (``dataset.conventions``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.versioned_hdf5 import software_version
from dataset.pairs_file import Pairs, assign_splits
from layout.generator import GeneratorConfig, generate
from layout.material import DEFAULT_MATERIAL, check_name
from layout.raster import rasterize
from simulators.materials import refractive_index
from simulators.spectral import (
    MOCLIP_WAVELENGTHS_NM,
    MODEL_NAMES,
    SpectralModel,
    bare_substrate_transmission,
    get_model,
)

log = logging.getLogger(__name__)

MOCLIP_THICKNESSES_NM = (150.0, 178.0, 195.0)


@dataclass(frozen=True)
class SyntheticPairsConfig:
    """Everything that decides the pairs; recorded whole as provenance."""

    count: int
    seed: int = 0
    model: str = "analytic"
    thicknesses_nm: tuple[float, ...] = MOCLIP_THICKNESSES_NM
    material: str = DEFAULT_MATERIAL
    periods_nm: tuple[int, ...] = (300, 400, 500, 600)
    wavelength_nm: tuple[float, ...] = tuple(float(x) for x in MOCLIP_WAVELENGTHS_NM)
    noise: float = 0.0  # standard deviation of the additive measurement noise, transmission units
    replicas: int = 1
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    batch_size: int = 4096
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count={self.count} must be >= 1")
        if self.replicas < 1:
            raise ValueError(f"replicas={self.replicas} must be >= 1")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise={self.noise} must be a finite standard deviation >= 0")
        if not self.thicknesses_nm or not all(
            np.isfinite(t) and t > 0 for t in self.thicknesses_nm
        ):
            raise ValueError(f"thicknesses_nm={self.thicknesses_nm} must be positive, e.g. 178")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.model not in MODEL_NAMES:
            raise ValueError(
                f"unknown spectral model {self.model!r}; known: {', '.join(MODEL_NAMES)}"
            )
        check_name(self.material, "material")  # a film, not the substrate or a typo
        refractive_index(self.material, self.wavelength_nm)  # bad names fail before any work


def make_pairs(config: SyntheticPairsConfig, progress: bool = False) -> Pairs:
    """Generate ``count`` designs, give each a thickness and spectra, add replicas and noise."""
    cfg = config
    model: SpectralModel = get_model(cfg.model, **cfg.model_options)
    wavelength = np.asarray(cfg.wavelength_nm, dtype=np.float64)
    library = generate(
        cfg.count, cfg.seed, GeneratorConfig(periods_nm=cfg.periods_nm), progress=progress
    )
    rng = np.random.default_rng([cfg.seed, 1])  # independent of the generator's stream
    thickness = np.asarray(cfg.thicknesses_nm, dtype=np.float64)[
        rng.integers(0, len(cfg.thicknesses_nm), cfg.count)
    ]
    spectra = np.empty((cfg.count, 2, wavelength.size))
    with tqdm(total=cfg.count, desc="spectra", unit="design", disable=not progress) as bar:
        for start in range(0, cfg.count, cfg.batch_size):
            rows = np.arange(start, min(start + cfg.batch_size, cfg.count))
            for t in np.unique(thickness[rows]):
                pick = rows[thickness[rows] == t]
                spectra[pick] = model.spectra(
                    library.take(pick), wavelength, thickness_nm=float(t), material=cfg.material
                )
            bar.update(rows.size)
    # Contract 5 holds what a microscope measures: transmission relative to the bare substrate
    # (dataset.conventions). A pad can out-transmit bare glass (an anti-reflecting film), so a
    # few relative values pass 1; they are clipped and counted, as curation does.
    spectra = spectra / bare_substrate_transmission(wavelength)
    geometry: NDArray[np.bool_] = rasterize(library)
    reps = np.repeat(np.arange(cfg.count), cfg.replicas)
    measured = spectra[reps]
    if cfg.noise > 0:
        noise_rng = np.random.default_rng([cfg.seed, 2])
        measured = measured + noise_rng.normal(0.0, cfg.noise, measured.shape)
    clipped = int(np.count_nonzero((measured < 0) | (measured > 1)))
    measured = np.clip(measured, 0.0, 1.0)
    params = np.stack([library.period_nm, thickness], axis=1)[reps] / 1000.0
    ids = library.design_id[reps]
    provenance = {
        "source": "synthetic",
        "command": "metascan sim pairs",
        "generator_software_version": software_version(),
        "config": _jsonable(asdict(cfg)),
        "model_settings": _jsonable(model.describe()),
        "spectra_kind": "zero-order transmission relative to the bare fused-silica substrate",
        "spectra_values_clipped": clipped,
    }
    log.info("made %d pairs of %d designs with the %s model", reps.size, cfg.count, cfg.model)
    return Pairs.build(
        geometry[reps],
        params,
        measured.astype(np.float32),
        wavelength,
        ids,
        assign_splits(ids, cfg.fractions, cfg.seed),
        provenance,
        material=cfg.material,
    )


def _jsonable(value: Any) -> Any:
    """Dataclass dicts with tuples, paths and numpy scalars made plain for JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)

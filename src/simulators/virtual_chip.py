"""The virtual chip: what every pad of a manifest really transmits, as fabricated.

A fabricated pad is never its design: e-beam exposure and etch dilate every feature. MOCLIP's
SEM checks found a +4 nm mean size bias with a 10 nm spread (issue 4), so each pad gets
``mean_bias_nm + N(0, dilation_sd_nm)`` added to every feature's width and height, applied
through the spectral model (``size_bias_nm``). Replicas of one design therefore get different
dilations and slightly different spectra, as on a real chip.

The default pad-to-pad spread is 1 nm, not the 10 nm of MOCLIP's SEM statistics, which pool
chips and write fields: MOCLIP kept designs whose replicas agree to an MSE of 1e-3, and on this
project's calibrated analytic model (a-Si, 178 nm) replicas agree that well for nearly every
design only at pad-to-pad spreads of about 1 nm. Designs whose two replicas' band spectra differ
by an MSE above 1e-3 (``benchmarks/bench_virtual_chip.py --replica-spread --size 40``, 4,800
designs): 0.9 % at 1 nm, 4.1 % at 2 nm, 9.5 % at 3 nm, 22 % at 5 nm, 46 % at 10 nm. Larger
spreads are one setting away (``dilation_sd_nm``), and then curation needs a larger
``--threshold``.

Randomness is a counter-based hash of (seed, stream, array_id, replica, role, row, col), not a
sequential generator: a pad's bias and defects depend only on which pad it is, never on the
order pads are listed or evaluated, so a resumed or partial simulation sees the same chip.

Non-design rows of the pad table:

* Fiducials are crosses of unpatterned film, tens of wavelengths wide: their transmission is
  the unpatterned film's Airy result (``film_transmission``), and their bias is 0.
* Missing pads (defect): the pattern was never written, so with the hard-mask / negative-tone
  flow the etch clears that pad's film and it transmits like the bare glass around it.
* Contaminated pads (defect): a particle shadows part of the pad; the transmission is scaled by
  ``contamination_factor`` at every wavelength (an opaque particle covering that area fraction).

Defects are planted on DATASET pads of one replica only (drawn from the seed unless set), so
curation can catch them by comparing replicas.

The film is the manifest's (``ChipManifest.material``), never an argument: a chip is made of what
it was designed to be made of, and its truth file records that material.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from dataset.truth_file import Defect, Truth
from instruments.protocols import BandwidthMode
from layout.manifest import ChipManifest, Role
from simulators.materials import get_material
from simulators.passband import (
    DEFAULT_BAND_CENTERS_NM,
    DEFAULT_MODE,
    PassbandConfig,
    band_weights,
    fine_grid,
)
from simulators.spectral.base import SpectralModel
from simulators.spectral.film import bare_substrate_transmission, film_transmission

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

# Independent hash streams, so drawing one quantity never shifts another.
_STREAM_BIAS_A, _STREAM_BIAS_B, _STREAM_DEFECT, _STREAM_REPLICA = 1, 2, 3, 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class FabricationConfig:
    """Per-chip bias, per-pad dilation spread and optional planted defects (module docstring)."""

    seed: int = 0
    mean_bias_nm: float = 4.0
    dilation_sd_nm: float = 1.0  # pad to pad; see the module docstring
    missing_fraction: float = 0.0
    contamination_fraction: float = 0.0
    contamination_factor: float = 0.5
    defect_replica: int | None = None  # None: drawn from the seed

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mean_bias_nm) and -50.0 <= self.mean_bias_nm <= 50.0):
            raise ValueError(f"mean_bias_nm={self.mean_bias_nm} must be in [-50, 50] nm")
        if not (np.isfinite(self.dilation_sd_nm) and 0.0 <= self.dilation_sd_nm <= 50.0):
            raise ValueError(f"dilation_sd_nm={self.dilation_sd_nm} must be in [0, 50] nm")
        for name in ("missing_fraction", "contamination_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1]")
        if self.missing_fraction + self.contamination_fraction > 1.0:
            raise ValueError("missing_fraction + contamination_fraction must be <= 1")
        if not 0.0 <= self.contamination_factor <= 1.0:
            raise ValueError(f"contamination_factor={self.contamination_factor} must be in [0, 1]")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")


def _splitmix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser (Steele et al. 2014): a bijective, well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    out: NDArray[np.uint64] = x ^ (x >> np.uint64(31))
    return out


def _as_u64(values: ArrayLike) -> NDArray[np.uint64]:
    out: NDArray[np.uint64] = np.asarray(values, dtype=np.int64).view(np.uint64)
    return out


def pad_uniform(seed: int, stream: int, keys: list[ArrayLike]) -> FloatArray:
    """Uniform (0, 1) draws, one per pad, keyed by ``keys`` (equal-length integer columns)."""
    n = np.asarray(keys[0]).shape[0]
    h = _splitmix(np.full(n, seed, dtype=np.int64).view(np.uint64))
    h = _splitmix(h ^ _as_u64(np.full(n, stream)))
    for key in keys:
        h = _splitmix(h ^ _as_u64(key))
    out: FloatArray = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)
    return out


class VirtualChip:
    """A manifest, as fabricated, seen through a spectral model."""

    def __init__(
        self,
        manifest: ChipManifest,
        model: SpectralModel,
        fabrication: FabricationConfig | None = None,
        *,
        passband: PassbandConfig | None = None,
    ) -> None:
        self.manifest = manifest
        self.model = model
        self.fabrication = fabrication or FabricationConfig()
        self.material = manifest.material
        get_material(self.material)  # a film without an index model fails before any work
        self.passband = passband or PassbandConfig()
        pads = manifest.pads
        self._design_row = np.full(len(pads), -1, dtype=np.int64)
        is_design = pads.role != Role.FIDUCIAL
        self._design_row[is_design] = manifest.designs.index_of(pads.design_id[is_design])
        self.size_bias_nm = self._draw_bias()
        self.defect = self._draw_defects()
        self.defect_replica = self._defect_replica()

    # -- fabrication ---------------------------------------------------------------------------

    def _keys(self) -> list[ArrayLike]:
        p = self.manifest.pads
        return [p.array_id, p.replica, p.role, p.row, p.col]

    def _draw_bias(self) -> FloatArray:
        """Mean bias + N(0, sd) per pad via Box-Muller on two hashed uniforms."""
        cfg = self.fabrication
        u1 = pad_uniform(cfg.seed, _STREAM_BIAS_A, self._keys())
        u2 = pad_uniform(cfg.seed, _STREAM_BIAS_B, self._keys())
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        bias: FloatArray = cfg.mean_bias_nm + cfg.dilation_sd_nm * normal
        bias[self.manifest.pads.role == Role.FIDUCIAL] = 0.0
        return bias

    def _defect_replica(self) -> int | None:
        cfg = self.fabrication
        pads = self.manifest.pads
        replicas = np.unique(pads.replica[pads.role == Role.DATASET])
        if replicas.size == 0:
            return None
        if cfg.defect_replica is not None:
            if cfg.defect_replica not in replicas:
                raise ValueError(
                    f"defect_replica={cfg.defect_replica} is not on this chip; replicas: "
                    f"{', '.join(str(int(r)) for r in replicas)}"
                )
            return cfg.defect_replica
        u = pad_uniform(cfg.seed, _STREAM_REPLICA, [np.zeros(1)])[0]
        return int(replicas[min(int(u * replicas.size), replicas.size - 1)])

    def _draw_defects(self) -> NDArray[np.int8]:
        cfg = self.fabrication
        pads = self.manifest.pads
        defect = np.full(len(pads), Defect.NONE, dtype=np.int8)
        if cfg.missing_fraction + cfg.contamination_fraction == 0:
            return defect
        target = self._defect_replica()
        eligible = (pads.role == Role.DATASET) & (pads.replica == target)
        u = pad_uniform(cfg.seed, _STREAM_DEFECT, self._keys())
        defect[eligible & (u < cfg.missing_fraction)] = Defect.MISSING
        contaminated = (u >= cfg.missing_fraction) & (
            u < cfg.missing_fraction + cfg.contamination_fraction
        )
        defect[eligible & contaminated] = Defect.CONTAMINATED
        return defect

    # -- spectra -------------------------------------------------------------------------------

    def glass_transmission(self, wavelength_nm: ArrayLike) -> FloatArray:
        """The bare glass between pads (air -> fused silica), (W,)."""
        return bare_substrate_transmission(wavelength_nm)

    def fine_spectra(
        self, wavelength_nm: ArrayLike, *, progress: bool = False, batch_size: int = 4096
    ) -> FloatArray:
        """True transmission of every pad at ``wavelength_nm``: (N_pads, 2, W)."""
        lam = np.asarray(wavelength_nm, dtype=np.float64)
        return self._solve(lam, lambda s: s, lam.size, progress, batch_size)

    def band_transmission(
        self,
        centers_nm: ArrayLike = DEFAULT_BAND_CENTERS_NM,
        mode: BandwidthMode = DEFAULT_MODE,
        *,
        progress: bool = False,
        batch_size: int = 4096,
    ) -> tuple[FloatArray, FloatArray]:
        """Passband-averaged transmission per pad (N, 2, B) and of the bare glass (B,).

        Each batch of fine spectra is reduced to bands at once, so memory stays at one batch
        of fine spectra however large the chip.
        """
        c = np.asarray(centers_nm, dtype=np.float64)
        lam = fine_grid(c, mode, self.passband)
        weights = band_weights(lam, c, mode, self.passband)
        pads = self._solve(lam, lambda s: s @ weights.T, c.size, progress, batch_size)
        glass: FloatArray = weights @ self.glass_transmission(lam)
        return pads, glass

    def _solve(
        self,
        lam: FloatArray,
        reduce: Callable[[FloatArray], FloatArray],
        width: int,
        progress: bool,
        batch_size: int,
    ) -> FloatArray:
        pads = self.manifest.pads
        out = np.empty((len(pads), 2, width), dtype=np.float64)
        solve = (self._design_row >= 0) & (self.defect != Defect.MISSING)
        # Unique (design, bias) pairs are solved once: with zero spread every replica shares one.
        rows = np.flatnonzero(solve)
        key = np.stack([self._design_row[rows].astype(np.float64), self.size_bias_nm[rows]], axis=1)
        unique, inverse = np.unique(key, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        design_rows = unique[:, 0].astype(np.int64)
        biases = unique[:, 1]
        log.info("solving %d unique (design, bias) pairs for %d pads", unique.shape[0], rows.size)
        solved = np.empty((unique.shape[0], 2, width), dtype=np.float64)
        designs = self.manifest.designs
        with tqdm(
            total=unique.shape[0], desc="spectra", unit="design", disable=not progress
        ) as bar:
            for start in range(0, unique.shape[0], batch_size):
                stop = min(start + batch_size, unique.shape[0])
                fine = self.model.spectra(
                    designs.take(design_rows[start:stop]),
                    lam,
                    thickness_nm=self.manifest.thickness_nm,
                    material=self.material,
                    size_bias_nm=biases[start:stop],
                )
                solved[start:stop] = reduce(fine)
                bar.update(stop - start)
        out[rows] = solved[inverse]
        contaminated = self.defect == Defect.CONTAMINATED
        out[contaminated] *= self.fabrication.contamination_factor
        film = reduce(
            np.broadcast_to(
                film_transmission(lam, self.manifest.thickness_nm, self.material), (1, 2, lam.size)
            )
        )
        out[pads.role == Role.FIDUCIAL] = film[0]
        glass = reduce(np.broadcast_to(self.glass_transmission(lam), (1, 2, lam.size)))
        out[self.defect == Defect.MISSING] = glass[0]
        return out


def make_truth(
    chip: VirtualChip,
    centers_nm: ArrayLike = DEFAULT_BAND_CENTERS_NM,
    mode: BandwidthMode = DEFAULT_MODE,
    *,
    progress: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Truth:
    """The truth-file contents for ``chip``, with the settings that produced them as provenance."""
    c = np.asarray(centers_nm, dtype=np.float64)
    transmission, glass = chip.band_transmission(c, mode, progress=progress)
    pads = chip.manifest.pads
    return Truth(
        array_id=pads.array_id.astype(np.int32),
        replica=pads.replica.astype(np.int32),
        row=pads.row.astype(np.int32),
        col=pads.col.astype(np.int32),
        role=pads.role.astype(np.int8),
        design_id=pads.design_id.astype(np.int64),
        size_bias_nm=chip.size_bias_nm,
        defect=chip.defect,
        transmission=np.clip(transmission, 0.0, 1.0),
        band_center_nm=c,
        glass_transmission=glass,
        bandwidth_mode=mode.value,
        provenance={
            "chip_id": chip.manifest.chip_id,
            "thickness_nm": chip.manifest.thickness_nm,
            "material": chip.material,
            "spectral_model": chip.model.name,
            "spectral_model_config": chip.model.describe(),
            "fabrication": asdict(chip.fabrication),
            "defect_replica": -1 if chip.defect_replica is None else chip.defect_replica,
            "passband": asdict(chip.passband),
            **(provenance or {}),
        },
    )

"""Curation: replicas of a design cross-check each other; what they agree on becomes a pair.

The rules, and why:

* Only DATASET pads take part. Companion arrays exist for SEM checks and fiducials are not
  designs; they are counted, never compared.
* A pad with any quality flag (saturated, low signal, doubtful registration, non-uniform,
  missing) is dropped before the comparison: its spectrum is known to be doubtful, and letting
  it vote would reject good twins. Each flag is counted by name (a pad with two flags counts
  under both).
* Pads are replicas of one design when they share ``design_id`` *and* the film thickness of
  their chip: the id hashes the in-plane geometry only, and the same cell on a thicker film is a
  different structure. Across chips of equal thickness the pads pool, so a second chip adds
  replicas.
* Replica MSE is the mean over polarizations and wavelengths of squared differences between two
  replicas' spectra (MOCLIP's criterion). With more than two usable replicas the design's MSE is
  the *largest pairwise* MSE: the threshold keeps the meaning it has for two replicas ("no two
  measurements of this design disagree by more than this"), and a single bad replica, which
  would otherwise bias the mean spectrum used as the training label, rejects the design. The
  alternative, MSE to the median, would need a rescaled threshold (for two replicas it is a
  quarter of the pairwise value) and quietly averages an outlier into the label. A design whose
  MSE is above ``threshold`` (default 1e-3, as MOCLIP) is rejected.
* A design with one usable replica cannot be cross-checked, so by default it is rejected as
  ``single_replica`` (unverified): an unflagged defect (a particle, a stitching error) looks like
  a plausible spectrum. ``keep_single=True`` keeps them, for chips without replicas.
* Kept designs get the mean spectrum of their usable replicas.
* All chips of one curation are of one film material (their manifests'); chips of two
  materials are refused, naming both: the same cell in another film is another structure, and
  a pairs file records one material.

Everything is vectorised: pads are sorted once by (thickness, design, usable first), groups are
runs of that order, sums come from ``np.add.reduceat``, and pairwise MSEs are computed for all
groups of the same replica count at once: 100,000 pads curate in about half a second on
two cores (benchmarks/bench_curation.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from common.values import Bounds
from dataset.array_spectra_file import WAVELENGTH_TOLERANCE_NM, ArraySpectra
from dataset.pairs_file import Pairs, assign_splits
from dataset.quality import PadFlag
from layout.design import DesignLibrary
from layout.manifest import ChipManifest, Role
from layout.material import common as common_material
from layout.raster import rasterize

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1e-3  # MOCLIP's replica MSE threshold, transmission units squared
MSE_RULE = "max_pairwise"  # recorded in provenance so a reader knows what the threshold bounded
PAIR_POLARIZATIONS = ("x", "y")  # the pairs file's axis 1
_THICKNESS_QUANTUM_NM = 1e-3  # thicknesses equal to 1 pm are one film (the design-id rule too)
_FLAG_NAMES = tuple((f.name.lower(), int(f)) for f in PadFlag if f.value and f.name)


class Decision(IntEnum):
    """What curation did with one design; the names are the reasons counted in provenance."""

    KEPT = 0
    REPLICA_MSE = 1  # usable replicas disagree by more than the threshold
    SINGLE_REPLICA = 2  # one usable replica: unverified (kept only with keep_single)
    NO_USABLE_REPLICA = 3  # every pad of the design was flagged


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class CurationResult:
    """Per-design decisions (D designs, sorted by thickness then design_id) and, for reports and
    tests, the per-pad view they came from (P pads: every input pad, chips in order of first
    appearance, each chip's arrays in input order)."""

    threshold: float
    keep_single: bool
    wavelength_nm: NDArray[np.float64]  # (W,)
    chips: tuple[str, ...]
    arrays: tuple[str, ...]  # "chip/array" of every input array
    hypercubes: tuple[str, ...]
    # per design
    design_id: NDArray[np.int64]  # (D,)
    thickness_nm: NDArray[np.float64]  # (D,)
    designs: DesignLibrary  # (D,) rows aligned with design_id
    pads: NDArray[np.int32]  # (D,) dataset pads measured
    replicas: NDArray[np.int32]  # (D,) usable (unflagged) pads
    replica_mse: NDArray[np.float64]  # (D,) largest pairwise MSE; NaN below two replicas
    decision: NDArray[np.int8]  # (D,) Decision codes
    spectrum: NDArray[np.float64]  # (D, 2, W) x, y mean of usable replicas; NaN when none
    # per pad
    pad_chip: NDArray[np.int32]  # (P,) index into chips
    pad_array_id: NDArray[np.int32]
    pad_replica: NDArray[np.int32]
    pad_role: NDArray[np.int8]
    pad_flags: NDArray[np.uint16]
    pad_design: NDArray[np.int64]  # (P,) row into the per-design arrays, -1 if not a dataset pad
    pad_transmission: NDArray[np.float64]  # (P, 2, W) x, y
    material: str = field(kw_only=True)  # the film of every chip (their manifests')
    designs_not_scanned: int = 0  # dataset designs of the manifests with no pad in the input
    extraction: dict[str, Any] = field(default_factory=dict)  # per-chip extraction settings

    def __len__(self) -> int:
        return int(self.design_id.shape[0])

    @property
    def kept(self) -> NDArray[np.bool_]:
        mask: NDArray[np.bool_] = self.decision == Decision.KEPT
        return mask

    @property
    def pad_usable(self) -> NDArray[np.bool_]:
        """Dataset pads with no quality flag: the ones that voted."""
        mask: NDArray[np.bool_] = (self.pad_design >= 0) & (self.pad_flags == 0)
        return mask

    @property
    def pad_rejected(self) -> NDArray[np.bool_]:
        """Dataset pads that contribute to no pair: flagged, or their design was rejected.
        False for companion and fiducial pads, which curation never considers."""
        dataset = self.pad_design >= 0
        design_kept = np.zeros(self.pad_design.shape, dtype=bool)
        design_kept[dataset] = self.kept[self.pad_design[dataset]]
        mask: NDArray[np.bool_] = dataset & ~(design_kept & (self.pad_flags == 0))
        return mask

    def design_counts(self) -> dict[str, int]:
        """Designs per decision, every decision named (zeros included)."""
        counts = np.bincount(self.decision, minlength=len(Decision))
        return {d.name.lower(): int(counts[d]) for d in Decision}

    def pad_counts(self) -> dict[str, int]:
        """Input pads by role, and dataset pads flagged (any flag) and usable."""
        dataset = self.pad_design >= 0
        return {
            "total": int(self.pad_design.size),
            **{r.name.lower(): int(np.count_nonzero(self.pad_role == r)) for r in Role},
            "dataset_flagged": int(np.count_nonzero(dataset & (self.pad_flags != 0))),
            "dataset_usable": int(np.count_nonzero(self.pad_usable)),
        }

    def flag_counts(self) -> dict[str, int]:
        """Dataset pads carrying each flag, by flag name; a pad with two flags counts twice."""
        flags = self.pad_flags[self.pad_design >= 0]
        return {name: int(np.count_nonzero(flags & bit)) for name, bit in _FLAG_NAMES}

    def provenance(self) -> dict[str, Any]:
        """What a pairs file written from this result records about how it was made."""
        with_mse = self.replica_mse[np.isfinite(self.replica_mse)]
        quantiles = (
            {f"p{q}": float(np.percentile(with_mse, q)) for q in (50, 90, 99, 100)}
            if with_mse.size
            else {}
        )
        return {
            "source": "measured",
            "command": "metascan curate",
            "chips": list(self.chips),
            "arrays": list(self.arrays),
            "hypercubes": list(self.hypercubes),
            "replica_mse_threshold": self.threshold,
            "replica_mse_rule": MSE_RULE,
            "keep_single": int(self.keep_single),
            "pads": self.pad_counts(),
            "pads_flagged_by_reason": self.flag_counts(),
            "designs": self.design_counts(),
            "designs_rejected_by_reason": {
                k: v for k, v in self.design_counts().items() if k != Decision.KEPT.name.lower()
            },
            "designs_not_scanned": self.designs_not_scanned,
            "replica_mse_percentiles": quantiles,
            "extraction": self.extraction,
        }

    def to_pairs(
        self,
        seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        provenance: Mapping[str, Any] | None = None,
    ) -> Pairs:
        """The kept designs as pairs: raster and params exactly as ``metascan sim pairs`` builds
        them (``layout.raster.rasterize``; period and film thickness in µm), the mean spectrum
        (float32, clipped to [0, 1]: noise can stray past the range the format allows; the
        clipped count is recorded), and splits grouped by design, seeded."""
        rows = np.flatnonzero(self.kept)
        spectra = self.spectrum[rows]
        outside = int(np.count_nonzero((spectra < 0) | (spectra > 1)))
        if outside:
            log.warning("clipped %d mean transmission values to [0, 1]", outside)
        library = self.designs.take(rows)
        params = np.stack([library.period_nm, self.thickness_nm[rows]], axis=1) / 1000.0
        ids = self.design_id[rows]
        return Pairs.build(
            rasterize(library),
            params,
            np.clip(spectra, 0.0, 1.0).astype(np.float32),
            self.wavelength_nm,
            ids,
            assign_splits(ids, fractions, seed),
            {
                **self.provenance(),
                "split_seed": seed,
                "split_fractions": list(fractions),
                "spectra_values_clipped": outside,
                **(provenance or {}),
            },
            material=self.material,
        )


THRESHOLD = Bounds(0.0, 1.0, lo_open=True)  # a replica MSE, transmission squared


def check_threshold(threshold: float) -> float:
    return float(THRESHOLD.check("threshold", threshold))


@dataclass(frozen=True)
class _ChipPads:
    """One chip's merged arrays, reduced to what the group-by needs."""

    index: int
    spectra: ArraySpectra
    transmission: NDArray[np.float64]  # (P, 2, W) x, y
    dataset: NDArray[np.bool_]
    library_row: NDArray[np.int64]  # (P,) row in the manifest's library, -1 if not dataset
    thickness_nm: float


def curate(
    spectra: Sequence[ArraySpectra],
    manifests: Mapping[str, ChipManifest],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    keep_single: bool = False,
) -> CurationResult:
    """Cross-check replicas of every design in ``spectra`` (any arrays, any chips; ``manifests``
    keyed by chip_id give thickness and geometry) and decide per design (module docstring)."""
    threshold = check_threshold(threshold)
    if not spectra:
        raise ValueError("curation needs at least one array-spectra input, got none")
    chips = _merge_by_chip(spectra)
    wavelength = chips[0].wavelength_nm
    parts = [_chip_pads(k, s, manifests) for k, s in enumerate(chips)]
    material = common_material(
        (f"chip {s.chip_id} (its manifest)", manifests[s.chip_id].material) for s in chips
    )
    libraries = [manifests[s.chip_id].designs for s in chips]
    offsets = np.cumsum([0, *(len(lib) for lib in libraries)])

    # Flat per-pad columns over every chip.
    def cat(get: Any) -> Any:
        return np.concatenate([get(p) for p in parts])

    transmission = cat(lambda p: p.transmission)
    flags = cat(lambda p: p.spectra.flags)
    dataset = cat(lambda p: p.dataset)
    design_id = cat(lambda p: p.spectra.design_id)
    thickness = cat(lambda p: np.full(len(p.spectra), p.thickness_nm))
    global_row = cat(lambda p: np.where(p.dataset, p.library_row + offsets[p.index], -1))

    # Sort dataset pads by (thickness, design, usable first): groups are runs of this order.
    pad_index = np.flatnonzero(dataset)
    film = np.rint(thickness / _THICKNESS_QUANTUM_NM).astype(np.int64)
    order = pad_index[np.lexsort((flags[pad_index] != 0, design_id[pad_index], film[pad_index]))]
    ids_sorted, tk_sorted = design_id[order], film[order]
    usable_sorted = flags[order] == 0
    new_group = np.ones(order.size, dtype=bool)
    new_group[1:] = (ids_sorted[1:] != ids_sorted[:-1]) | (tk_sorted[1:] != tk_sorted[:-1])
    starts = np.flatnonzero(new_group)
    group_of_sorted = np.cumsum(new_group) - 1
    n_groups = starts.size
    pads = np.diff(np.append(starts, order.size)).astype(np.int32)
    replicas = np.add.reduceat(usable_sorted.astype(np.int32), starts) if n_groups else pads

    values = transmission[order].reshape(order.size, len(PAIR_POLARIZATIONS) * wavelength.size)
    values_usable = np.where(usable_sorted[:, None], values, 0.0)
    sums = (
        np.add.reduceat(values_usable, starts, axis=0) if n_groups else values[:0].copy()
    )  # (D, 2W)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / replicas[:, None]
    mean[replicas == 0] = np.nan
    mse = _max_pairwise_mse(values, starts, replicas)

    decision = np.full(n_groups, Decision.KEPT, dtype=np.int8)
    decision[replicas == 0] = Decision.NO_USABLE_REPLICA
    if not keep_single:
        decision[replicas == 1] = Decision.SINGLE_REPLICA
    decision[(replicas >= 2) & (mse > threshold)] = Decision.REPLICA_MSE

    pad_design = np.full(design_id.size, -1, dtype=np.int64)
    pad_design[order] = group_of_sorted
    all_designs = DesignLibrary.concatenate(libraries)
    result = CurationResult(
        threshold=threshold,
        keep_single=keep_single,
        wavelength_nm=wavelength,
        chips=tuple(s.chip_id for s in chips),
        arrays=tuple(f"{s.chip_id}/{name}" for s in chips for name in s.array_name.split(",")),
        hypercubes=tuple(dict.fromkeys(h for s in chips for h in s.hypercubes)),
        design_id=ids_sorted[starts],
        thickness_nm=thickness[order][starts],
        designs=all_designs.take(global_row[order][starts]),
        pads=pads,
        replicas=replicas.astype(np.int32),
        replica_mse=mse,
        decision=decision,
        spectrum=mean.reshape(n_groups, len(PAIR_POLARIZATIONS), wavelength.size),
        pad_chip=cat(lambda p: np.full(len(p.spectra), p.index, dtype=np.int32)),
        pad_array_id=cat(lambda p: p.spectra.array_id),
        pad_replica=cat(lambda p: p.spectra.replica),
        pad_role=cat(lambda p: p.spectra.role),
        pad_flags=flags,
        pad_design=pad_design,
        pad_transmission=transmission,
        material=material,
        designs_not_scanned=sum(_not_scanned(p, manifests) for p in parts),
        extraction={
            s.chip_id: {
                "erosion_margin_um": s.erosion_margin_um,
                "flag_thresholds": s.flag_thresholds,
                "reference_compensation": int(s.reference_compensation),
                "registration_method": s.registration_method,
                "registration_residual_px": s.registration_residual_px,
            }
            for s in chips
        },
    )
    counts = result.design_counts()
    log.info(
        "curated %d designs from %d pads: %s",
        len(result),
        design_id.size,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    return result


def _merge_by_chip(spectra: Sequence[ArraySpectra]) -> list[ArraySpectra]:
    """One merged object per chip (the merge checks a chip's arrays agree and no pad repeats),
    then the checks across chips: one wavelength grid, both polarizations."""
    by_chip: dict[str, list[ArraySpectra]] = {}
    for s in spectra:
        by_chip.setdefault(s.chip_id, []).append(s)
    merged = [ArraySpectra.concatenate(parts) for parts in by_chip.values()]
    first = merged[0]
    for chip in merged:
        missing = [p for p in PAIR_POLARIZATIONS if p not in chip.polarization]
        if missing:
            raise ValueError(
                f"chip {chip.chip_id} ({chip.array_name}) has polarizations "
                f"{chip.polarization}; pairs need {PAIR_POLARIZATIONS}, missing {missing}"
            )
        w0, w = first.wavelength_nm, chip.wavelength_nm
        if w.shape != w0.shape or np.max(np.abs(w - w0)) > WAVELENGTH_TOLERANCE_NM:
            raise ValueError(
                f"chip {chip.chip_id} has wavelength_nm ({w.size} bands, {w[0]:g}..{w[-1]:g}), "
                f"chip {first.chip_id} has ({w0.size} bands, {w0[0]:g}..{w0[-1]:g}); "
                "only identical grids curate together"
            )
    return merged


def _chip_pads(
    index: int, spectra: ArraySpectra, manifests: Mapping[str, ChipManifest]
) -> _ChipPads:
    manifest = manifests.get(spectra.chip_id)
    if manifest is None:
        raise ValueError(
            f"chip_id {spectra.chip_id!r} (arrays {spectra.array_name}) has no chip manifest; "
            f"manifests were given for {sorted(manifests) or 'no chip'}"
        )
    dataset = spectra.role == Role.DATASET
    library_row = np.full(len(spectra), -1, dtype=np.int64)
    try:
        library_row[dataset] = manifest.designs.index_of(spectra.design_id[dataset])
    except KeyError as exc:
        raise ValueError(
            f"chip {spectra.chip_id}: {exc.args[0]} of the chip manifest; is it the manifest "
            f"of this chip?"
        ) from None
    columns = [spectra.polarization.index(p) for p in PAIR_POLARIZATIONS]
    return _ChipPads(
        index,
        spectra,
        spectra.transmission[:, columns],
        dataset,
        library_row,
        float(manifest.thickness_nm),
    )


def _not_scanned(part: _ChipPads, manifests: Mapping[str, ChipManifest]) -> int:
    pads = manifests[part.spectra.chip_id].pads
    planned = np.unique(pads.design_id[pads.role == Role.DATASET])
    seen = np.unique(part.spectra.design_id[part.dataset])
    return int(np.setdiff1d(planned, seen, assume_unique=True).size)


def _max_pairwise_mse(
    values: NDArray[np.float64], starts: NDArray[np.intp], replicas: NDArray[np.int32]
) -> NDArray[np.float64]:
    """Largest pairwise MSE per group, NaN below two usable replicas. Usable pads lead each
    group, so group ``g``'s replicas are rows ``starts[g] .. starts[g] + replicas[g] - 1``;
    groups of equal replica count are stacked and compared pair by pair at once."""
    mse = np.full(starts.size, np.nan)
    for k in np.unique(replicas[replicas >= 2]):
        groups = np.flatnonzero(replicas == k)
        stack = values[starts[groups][:, None] + np.arange(k)]  # (G, k, 2W)
        worst = np.zeros(groups.size)
        for i in range(k - 1):
            diff = stack[:, i + 1 :] - stack[:, i : i + 1]  # every partner j > i at once
            worst = np.maximum(worst, np.mean(diff * diff, axis=2).max(axis=1))
        mse[groups] = worst
    return mse

"""Designs for a target map (``metascan design chip``): each distinct target designed once.

Both kinds of target are judged through one *spectra predictor*, the design's spectrum as the
model expects it to be measured: the forward surrogate's prediction, or (a contrastive model)
the measured spectrum of the nearest latent in a pairs file (MOCLIP's zero-shot prediction).
A spectral target scores the predicted weighted MSE; a colour target the CIEDE2000 between the
predicted spectrum's colour under the bench lamp and the pixel (:mod:`dataset.colorimetry`).
What the chip then promises is exactly what the design was chosen by.

``retrieve``: every probe whose period tiles the pad and whose film is the chip's is scored
against every target; the best wins. ``hybrid``: the best ``particles`` probes of each target
warm-start a PSO (nevergrad, :func:`models.optimize.optimize_pso`) on the same objective. The
colour difference has no gradient in torch, so unlike ``design optimize --method hybrid`` there
are no soft-raster steps: one objective for both kinds keeps the promise honest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dataset.colorimetry import Colorimetry, delta_e, lab_of_srgb
from dataset.target_map import TargetMap
from dataset.targets_file import weighted_mse
from layout.chip import cells_per_pad
from layout.design import DesignLibrary
from layout.design_space import DesignSpace
from layout.raster import rasterize
from models.inference import InferenceConfig
from models.objectives import ColourDifference, Objective, PredictedMSE

log = logging.getLogger(__name__)

Method = Literal["retrieve", "hybrid"]
METHODS: tuple[Method, ...] = ("retrieve", "hybrid")
Predictor = Callable[[NDArray[np.bool_], NDArray[np.float64]], NDArray[np.float32]]
_RASTER_BATCH = 4096


@dataclass(frozen=True)
class ChipDesignConfig:
    method: Method = "retrieve"
    iterations: int = 10  # hybrid: PSO iterations
    particles: int = 50  # hybrid: swarm size (the best probes of each target)
    seed: int = 0
    lamp_temperature_k: float = 3200.0  # the bench's halogen (simulators.passband)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")
        if not 1 <= self.iterations <= 10_000:
            raise ValueError(f"--iterations {self.iterations} must be in [1, 10000]")
        if not 2 <= self.particles <= 10_000:
            raise ValueError(f"--particles {self.particles} must be in [2, 10000]")


@dataclass(frozen=True)
class SpectraPredictor:
    """A design's expected measured spectrum, and how that is predicted (for provenance)."""

    predict: Predictor
    described: str
    wavelength_nm: NDArray[np.float64]

    def of_library(
        self, library: DesignLibrary, thickness_nm: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        """(N, 2, W) predictions of designs, rasterized a batch at a time (a million probes'
        rasters would not fit in memory at once)."""
        out = np.empty((len(library), 2, self.wavelength_nm.size), np.float32)
        for lo in range(0, len(library), _RASTER_BATCH):
            part = library.take(np.arange(lo, min(lo + _RASTER_BATCH, len(library))))
            params = np.stack([part.period_nm, thickness_nm[lo : lo + len(part)]], axis=1)
            out[lo : lo + len(part)] = self.predict(rasterize(part), params / 1000.0)
        return out


@dataclass(frozen=True, eq=False)
class DesignedTargets:
    """One chosen design per designed target (rows of ``target_rows``: the map's
    representatives) with what the model promises for it."""

    target_rows: NDArray[np.int64]  # (D,) rows of the map's target_ids
    library: DesignLibrary  # (D,) the chosen design of each, in the same order
    thickness_nm: float
    promised_spectra: NDArray[np.float64]  # (D, 2, W)
    promised_lab: NDArray[np.float64]  # (D, 3)
    target_lab: NDArray[np.float64]  # (D, 3) the pixel (colour) or the target spectrum's colour
    promised_error: NDArray[np.float64]  # (D,) ΔE2000 (colour) or weighted MSE (spectrum)
    retrieved_error: NDArray[np.float64]  # (D,) the best probe's, before any PSO
    calls: int  # predictor calls per designed target
    pool_lab: NDArray[np.float64]  # (N, 3) predicted colours of every candidate probe


def tiling_periods(periods_nm: NDArray[np.float64], pad_size_um: float) -> tuple[int, ...]:
    """The periods among ``periods_nm`` that tile a pad: what a chip's search space may use."""
    out = []
    for period in np.unique(periods_nm):
        try:
            cells_per_pad(float(period), pad_size_um)
        except ValueError:
            continue
        out.append(int(period))
    return tuple(out)


def candidate_probes(
    library: DesignLibrary,
    thickness_nm: NDArray[np.float64],
    film_nm: float,
    pad_size_um: float,
    space: DesignSpace | None = None,
) -> NDArray[np.int64]:
    """Rows of probes a chip of this film and pad can hold: the film's thickness, a period
    that tiles the pad, and (for a warm start) inside the search space."""
    ok = np.isclose(thickness_nm, film_nm)
    ok &= np.isin(library.period_nm, tiling_periods(library.period_nm, pad_size_um))
    if space is not None:
        ok &= space.contains(library, thickness_nm)
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        raise ValueError(
            f"no probe is {film_nm:g} nm thick with a period that tiles a {pad_size_um:g} µm pad; "
            "build probes with --thicknesses of the chip's film and periods dividing the pad"
        )
    return rows


def _queries(target_map: TargetMap, rows: NDArray[np.int64]) -> NDArray[Any]:
    if target_map.kind == "colour":
        assert target_map.srgb is not None
        return lab_of_srgb(target_map.srgb[rows])
    assert target_map.targets is not None
    t = target_map.targets
    return PredictedMSE.queries(t.spectra[rows], t.weight[rows])


def _errors(
    kind: str, predicted: NDArray[np.floating[Any]], queries: NDArray[Any], colours: Colorimetry
) -> NDArray[np.float64]:
    """(T, N) error of every predicted spectrum against every target: lower is better."""
    if kind == "colour":
        lab = colours.lab_of_spectra(predicted)
        return delta_e(queries[:, None, :], lab[None, :, :])
    out = np.empty((queries.shape[0], predicted.shape[0]))
    for i, q in enumerate(queries):
        out[i] = weighted_mse(predicted, q[0][None], q[1][None])
    return out


def design_map(
    target_map: TargetMap,
    predictor: SpectraPredictor,
    probes: DesignLibrary,
    probe_thickness_nm: NDArray[np.float64],
    film_nm: float,
    pad_size_um: float,
    cfg: ChipDesignConfig,
    space: DesignSpace | None = None,
    progress: bool = False,
) -> DesignedTargets:
    """The design of every target the map uses (module docstring)."""
    from models.optimize import OptimizeConfig, optimize_pso

    colours = Colorimetry(predictor.wavelength_nm, cfg.lamp_temperature_k)
    rows = target_map.designs_needed
    queries = _queries(target_map, rows)
    pool = candidate_probes(
        probes, probe_thickness_nm, film_nm, pad_size_um, space if cfg.method == "hybrid" else None
    )
    lib = probes.take(pool)
    thick = probe_thickness_nm[pool]
    log.info("predicting the spectra of %d candidate probes", pool.size)
    predicted = predictor.of_library(lib, thick)
    errors = np.empty((rows.size, pool.size))
    for lo in range(0, rows.size, 64):
        errors[lo : lo + 64] = _errors(target_map.kind, predicted, queries[lo : lo + 64], colours)
    errors[~np.isfinite(errors)] = np.inf  # a NaN prediction is no candidate, never the best
    best = np.argmin(errors, axis=1)
    retrieved = errors[np.arange(rows.size), best]
    if not np.all(np.isfinite(retrieved)):
        raise ValueError(
            f"the predictor ({predictor.described}) gives no finite spectrum for any of the "
            f"{pool.size} candidate probes of target {target_map.target_ids[rows[0]]!r}"
        )
    chosen = lib.take(best)
    calls = 0
    if cfg.method == "hybrid":
        if space is None:
            raise ValueError("the hybrid needs a design space to search")
        if cfg.particles > pool.size:
            raise ValueError(
                f"--particles {cfg.particles} is more than the {pool.size} probes to start from"
            )
        top = np.argsort(errors, axis=1)[:, : cfg.particles]
        starts = space.encode(lib.take(top.ravel()), thick[top.ravel()]).reshape(
            rows.size, cfg.particles, space.dimension
        )
        objective: Objective = (
            ColourDifference(predictor.predict, colours)
            if target_map.kind == "colour"
            else PredictedMSE(predictor.predict)
        )
        pso = OptimizeConfig(
            iterations=cfg.iterations,
            particles=cfg.particles,
            seed=cfg.seed,
            infeasible_score=-1e9,  # below any -ΔE or -MSE
        )
        result = optimize_pso(
            space,
            objective,
            queries.astype(np.float32),
            pso,
            start_points=starts,
            progress=progress,
        )
        chosen = result.library
        calls = int(result.encoded // max(rows.size, 1))
    promised = predictor.of_library(chosen, np.full(len(chosen), film_nm)).astype(np.float64)
    promised_lab = colours.lab_of_spectra(promised)
    if target_map.kind == "colour":
        target_lab = queries.astype(np.float64)
        error = delta_e(promised_lab, target_lab)
    else:
        assert target_map.targets is not None
        spectra = target_map.targets.spectra[rows]
        target_lab = colours.lab_of_spectra(spectra)
        error = weighted_mse(promised, spectra, target_map.targets.weight[rows])
    return DesignedTargets(
        target_rows=rows,
        library=chosen,
        thickness_nm=film_nm,
        promised_spectra=promised,
        promised_lab=promised_lab,
        target_lab=target_lab,
        promised_error=np.asarray(error, dtype=np.float64),
        retrieved_error=retrieved,
        calls=calls + pool.size,
        pool_lab=colours.lab_of_spectra(predicted),
    )


GAMUT_LEVELS = 8  # sRGB cube samples per channel: 512 colours
GAMUT_DELTA_E = (2.0, 5.0, 10.0)


def reachable_gamut(pool_lab: NDArray[np.float64]) -> dict[str, Any]:
    """How much of sRGB the candidate designs reach: of an even sample of the sRGB cube, the
    fraction whose nearest predicted design colour is within each ΔE2000 of
    ``GAMUT_DELTA_E``, and the spread of lightness and chroma the designs cover. A print can
    only be as colourful as this, whatever the search does."""
    levels = np.linspace(0, 255, GAMUT_LEVELS).round().astype(np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = lab_of_srgb(cube)
    nearest = np.empty(cube.shape[0])
    for lo in range(0, cube.shape[0], 32):
        nearest[lo : lo + 32] = delta_e(lab[lo : lo + 32, None], pool_lab[None]).min(axis=1)
    chroma = np.hypot(pool_lab[:, 1], pool_lab[:, 2])
    return {
        "designs": int(pool_lab.shape[0]),
        "srgb_samples": int(cube.shape[0]),
        "fraction_within_delta_e": {f"{d:g}": float(np.mean(nearest <= d)) for d in GAMUT_DELTA_E},
        "nearest_delta_e_median": float(np.median(nearest)),
        "lightness_range": [float(pool_lab[:, 0].min()), float(pool_lab[:, 0].max())],
        "chroma_max": float(chroma.max()),
        "chroma_q95": float(np.quantile(chroma, 0.95)),
    }


def load_predictor(
    model_dir: Path,
    surrogate_dir: Path | None,
    spectra_db: Path | None,
    inference: InferenceConfig,
    db_split: str = "train",
) -> SpectraPredictor:
    """The surrogate when given, else the contrastive model's nearest measured spectrum in
    ``spectra_db``; either must be of the model's film."""
    from dataset.pairs_file import SPLIT_NAMES
    from dataset.pairs_io import load_pairs
    from models.inference import encode_geometry, predict_geometry, prepare
    from models.inverse import SpectraDatabase, check_bands
    from models.model_dir import check_material, load_model, load_surrogate, model_material

    if surrogate_dir is not None:
        check_material(surrogate_dir, model_material(model_dir), f"--model {model_dir}")
        net = prepare(load_surrogate(surrogate_dir), inference)

        def surrogate(
            images: NDArray[np.bool_], params: NDArray[np.float64]
        ) -> NDArray[np.float32]:
            return predict_geometry(net, images, params, inference)

        wavelength = (
            _model_wavelengths(surrogate_dir)
            if spectra_db is None
            else np.asarray(load_pairs(spectra_db).wavelength_nm, dtype=np.float64)
        )
        check_bands(net, wavelength, f"surrogate {surrogate_dir}")
        return SpectraPredictor(surrogate, f"forward surrogate {surrogate_dir}", wavelength)
    if spectra_db is None:
        raise ValueError(
            "give --surrogate (a forward model) or --spectra-db (pairs whose measured spectra the "
            "model retrieves): a design's promised spectrum needs one"
        )
    pairs = load_pairs(spectra_db)
    check_material(model_dir, pairs.material, f"--spectra-db {spectra_db}")
    rows = np.flatnonzero(pairs.split == SPLIT_NAMES.index(db_split))
    if rows.size == 0:
        raise ValueError(f"--spectra-db {spectra_db} has no {db_split!r} rows")
    model = prepare(load_model(model_dir), inference)
    check_bands(model, pairs.wavelength_nm, f"--spectra-db {spectra_db}")
    database = SpectraDatabase.encode(model, pairs.spectra[rows], inference)

    def nearest(images: NDArray[np.bool_], params: NDArray[np.float64]) -> NDArray[np.float32]:
        latent = encode_geometry(model, images, params, inference)
        return database.predict(latent).spectra.astype(np.float32)

    return SpectraPredictor(
        nearest,
        f"nearest measured spectrum of {spectra_db} ({db_split}) by {model_dir}'s latents",
        np.asarray(pairs.wavelength_nm, dtype=np.float64),
    )


def _model_wavelengths(folder: Path) -> NDArray[np.float64]:
    """The bands a model learned: those of the pairs file its config records (a model
    directory stores only their count)."""
    from dataset.pairs_io import load_pairs
    from models.model_dir import read_config

    data = read_config(folder).get("train", {}).get("data", {})
    path = Path(str(data.get("path", "")))
    if not path.is_file():
        raise ValueError(
            f"model {folder} was trained on {path}, which is gone; give --spectra-db (pairs of "
            "the same bands) so the bands are known"
        )
    return np.asarray(load_pairs(path).wavelength_nm, dtype=np.float64)

"""Zero-shot inverse design and spectra prediction by retrieval in the shared latent space.

*Inverse design* (MOCLIP Fig. 5): a target spectrum's latent is compared with the geometry
latents of a probe database and the most similar probes are the answer; nothing is trained for
the target. *Spectra prediction* runs the other way: a geometry's latent is compared with the
spectrum latents of a database of measured spectra, and the measured spectra of the most
similar entries are the prediction (top-1, or a similarity-weighted mean of the top k).

Both only rank; how good the ranking is, is judged elsewhere: inverse design by fabricating and
measuring the chosen designs on the simulated bench (``simulators.design_bench``), prediction
against held-out truth beside the oracle and the mean spectrum (:func:`score_prediction`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataset.chosen_designs_file import ChosenDesigns, file_sha256
from dataset.probes_file import ProbeSet, read_probes
from dataset.targets_file import Targets, mse_quantiles, nearest_weighted_mse, weighted_mse
from models.inference import InferenceConfig, encode_geometry, encode_spectra, prepare
from models.model import ContrastiveModel
from models.model_dir import load_model, model_identity, model_material
from models.search import ProbeIndex, SearchConfig
from models.surrogate import ForwardSurrogate

log = logging.getLogger(__name__)


def check_bands(
    model: ContrastiveModel | ForwardSurrogate, wavelength_nm: NDArray[np.float64], what: str
) -> None:
    if wavelength_nm.size != model.cfg.num_wavelengths:
        raise ValueError(
            f"{what} has {wavelength_nm.size} bands but the model takes "
            f"{model.cfg.num_wavelengths}; make the targets on the model's bands "
            "(metascan design targets --model RUN)"
        )


def load_database(
    model_dir: Path, probe_paths: list[Path]
) -> tuple[ContrastiveModel, str, ProbeSet]:
    """The model and the probe shards it encoded (another model's database is refused)."""
    identity = model_identity(model_dir)
    probes = read_probes(probe_paths, identity)
    if probes.shards_missing:
        log.warning(
            "probe database %s lacks shards %s of %d: searching what is there",
            probe_paths[0],
            list(probes.shards_missing),
            int(probes.build.get("shard_count", 1) or 1),
        )
    return load_model(model_dir), identity, probes


def retrieve(
    model_dir: Path,
    probe_paths: list[Path],
    targets: Targets,
    targets_path: Path,
    top_k: int,
    database_sizes: tuple[int, ...] | None = None,
    inference: InferenceConfig | None = None,
    search: SearchConfig | None = None,
    rerank: Rerank | None = None,
) -> ChosenDesigns:
    """The ``top_k`` probes most similar to each target; with ``database_sizes``, once per
    size over the first that many probes (a build's prefix is a smaller build).

    With ``rerank``, a shortlist of the most similar probes is ordered by the weighted MSE
    between the target and each probe's predicted spectrum (zero-shot prediction from measured
    spectra, :class:`SpectraDatabase`): the latent search alone cannot see the targets' band
    weights, and it ranks by a similarity that is only roughly the spectral error."""
    material = model_material(model_dir)
    targets.check_material(material, f"model {model_dir}", f"targets {targets_path}")
    model, identity, probes = load_database(model_dir, probe_paths)
    check_bands(model, targets.wavelength_nm, "the targets file")
    inf = inference or InferenceConfig()
    model = prepare(model, inf)
    queries = encode_spectra(model, targets.spectra, inf)
    # Largest database first: the library then starts with each target's best designs over the
    # whole database, in target order, so `layout chip` of its first N rows lays those out.
    sizes = tuple(sorted(database_sizes or (len(probes),), reverse=True))
    for s in sizes:
        if not 1 <= s <= len(probes):
            raise ValueError(
                f"database size {s} is outside [1, {len(probes)}] (the probes available)"
            )
        if top_k > s:
            raise ValueError(f"--top-k {top_k} is more than the database size {s}")
    rows: list[NDArray[np.int64]] = []
    sims: list[NDArray[np.float32]] = []
    size_col: list[NDArray[np.int64]] = []
    if rerank is not None and rerank.spectra.shape[1:] != targets.spectra.shape[1:]:
        raise ValueError(
            f"re-ranking spectra ({rerank.source}) have shape {rerank.spectra.shape[1:]} per row, "
            f"the targets {targets.spectra.shape[1:]}: not the same bands"
        )
    answers = SpectraDatabase.encode(model, rerank.spectra, inf) if rerank is not None else None
    for s in sizes:
        index = ProbeIndex.build([probes.latent[:s]], search or SearchConfig())
        width = min(s, max(top_k, rerank.shortlist)) if rerank is not None else top_k
        score, found = index.search(queries, width)
        if answers is not None and rerank is not None:
            score, found = _reranked(answers, rerank, probes.latent, targets, score, found, top_k)
        rows.append(found.ravel())
        sims.append(score.ravel())
        size_col.append(np.full(found.size, s, dtype=np.int64))
    found_rows = np.concatenate(rows)
    unique_rows, first, design_row = np.unique(found_rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # library rows in order of first choice
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    unique_rows, design_row = unique_rows[order], position[design_row.ravel()]
    n_sizes = len(sizes)
    return ChosenDesigns(
        library=probes.library.take(unique_rows),
        target_id=tuple(
            np.tile(np.repeat(np.asarray(targets.target_id, dtype=object), top_k), n_sizes)
        ),
        rank=np.tile(np.arange(1, top_k + 1, dtype=np.int32), n_sizes * len(targets)),
        similarity=np.concatenate(sims).astype(np.float32),
        design_row=design_row.ravel().astype(np.int64),
        thickness_nm=probes.thickness_nm[found_rows],
        database_size=np.concatenate(size_col),
        model_identity=identity,
        targets_sha256=file_sha256(targets_path),
        material=material,
        provenance={
            "command": "metascan design retrieve",
            "model": str(model_dir),
            "probes": [str(p) for p in probe_paths],
            "probe_build": probes.build,
            "targets": str(targets_path),
            "top_k": top_k,
            "ranked_by": "latent cosine similarity"
            if rerank is None
            else f"predicted weighted MSE among the {rerank.shortlist} most similar probes "
            f"(spectra from {rerank.source}, top {rerank.predict_k} weighted)",
        },
    )


@dataclass(frozen=True, eq=False)
class Rerank:
    """Re-ranking settings: the measured spectra to predict from and how many to re-rank."""

    spectra: NDArray[np.floating[Any]]
    source: str
    shortlist: int = 100
    predict_k: int = 5


def _reranked(
    answers: SpectraDatabase,
    rerank: Rerank,
    latents: NDArray[np.float32],
    targets: Targets,
    score: NDArray[np.float32],
    found: NDArray[np.int64],
    top_k: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Each target's shortlist ordered by predicted weighted MSE (stable: ties keep the latent
    order); the first ``top_k`` kept, with their latent similarities."""
    unique, inverse = np.unique(found, return_inverse=True)
    predicted = answers.predict(latents[unique], rerank.predict_k, weighted=True).spectra
    candidate = inverse.reshape(found.shape)
    err = np.empty(found.shape)
    for start in range(0, found.shape[0], 512):  # (512, L, 2, W) at a time
        sl = slice(start, start + 512)
        w = targets.weight[sl, None]
        diff = predicted[candidate[sl]] - targets.spectra[sl, None]
        err[sl] = (w * diff**2).sum(axis=(2, 3)) / w.sum(axis=(2, 3))
    order = np.argsort(err, axis=1, kind="stable")[:, :top_k]
    return np.take_along_axis(score, order, 1), np.take_along_axis(found, order, 1)


@dataclass(frozen=True, eq=False)
class Prediction:
    """Predicted spectra of N geometries and where they came from in the database."""

    spectra: NDArray[np.float64]  # (N, 2, W)
    top_rows: NDArray[np.int64]  # (N, k) database rows, best first
    top_similarity: NDArray[np.float32]  # (N, k)


def predict(
    model: ContrastiveModel,
    images: NDArray[np.bool_],
    params_um: NDArray[np.float64],
    db_spectra: NDArray[np.floating[Any]],
    top_k: int = 1,
    weighted: bool = False,
    inference: InferenceConfig | None = None,
) -> Prediction:
    """Each geometry's measured-spectrum prediction from ``db_spectra`` (M, 2, W): the top-1
    entry, or with ``weighted`` the softmax(similarity / temperature)-weighted mean of the top
    ``top_k`` (the model's own temperature: the weights it was trained to mean)."""
    inf = inference or InferenceConfig()
    model = prepare(model, inf)
    geo = encode_geometry(model, images, params_um, inf)
    return SpectraDatabase.encode(model, db_spectra, inf).predict(geo, top_k, weighted)


@dataclass(frozen=True, eq=False)
class SpectraDatabase:
    """Measured spectra and their latents: the answers zero-shot prediction retrieves from."""

    spectra: NDArray[np.float64]  # (M, 2, W)
    index: ProbeIndex
    logit_scale: float  # the model's exp(logit_scale): how sharply similarities weigh

    @staticmethod
    def encode(
        model: ContrastiveModel, db_spectra: NDArray[np.floating[Any]], inf: InferenceConfig
    ) -> SpectraDatabase:
        latents = encode_spectra(model, db_spectra, inf)
        scale = float(model.logit_scale.detach().exp().clamp(max=100.0))
        spectra = np.asarray(db_spectra, dtype=np.float64)
        return SpectraDatabase(spectra, ProbeIndex.build([latents], SearchConfig()), scale)

    def predict(
        self, geometry_latents: NDArray[np.float32], top_k: int = 1, weighted: bool = False
    ) -> Prediction:
        if not 1 <= top_k <= self.spectra.shape[0]:
            raise ValueError(
                f"--top-k {top_k} is outside [1, {self.spectra.shape[0]}] (database rows)"
            )
        score, rows = self.index.search(geometry_latents, top_k)
        if weighted and top_k > 1:
            logits = self.logit_scale * score.astype(np.float64)
            w = np.exp(logits - logits.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            spectra = np.einsum("nk,nkpw->npw", w, self.spectra[rows])
        else:
            spectra = self.spectra[rows[:, 0]]
        return Prediction(spectra, rows, score)


def score_prediction(
    predicted: NDArray[np.float64],
    truth: NDArray[np.float64],
    db_spectra: NDArray[np.floating[Any]],
) -> dict[str, Any]:
    """MSE quantiles of the prediction, of the oracle (the database spectrum closest to each
    truth: what a perfect retrieval from this database could give) and of the database mean."""
    weight = np.ones_like(truth)
    db = np.asarray(db_spectra, dtype=np.float64)
    oracle = nearest_weighted_mse(db, truth, weight)
    mean = weighted_mse(np.broadcast_to(db.mean(axis=0), truth.shape), truth, weight)
    model_mse = weighted_mse(predicted, truth, weight)
    return {
        "count": int(truth.shape[0]),
        "model": mse_quantiles(model_mse),
        "oracle": mse_quantiles(oracle),
        "mean_spectrum": mse_quantiles(mean),
        "model_over_oracle_median": float(np.median(model_mse) / max(np.median(oracle), 1e-12)),
    }

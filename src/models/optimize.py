"""Optimization in the generator's own parameter space (:class:`layout.design_space.
DesignSpace`): MOCLIP's latent search (Fig. 6f; a design whose geometry latent is most similar
to the target spectrum's latent), or the same search on a forward surrogate's predicted
weighted MSE (:mod:`models.objectives`).

PSO is nevergrad's (``ConfPSO``, its standard inertia 1/(2 ln 2) and acceleration 0.5 + ln 2,
through ask/tell), started from random probes (generator designs encoded into the box, as
MOCLIP starts from 100 random probes; ``start="uniform"`` draws the box instead): one optimizer
per target, all targets of a chunk asked together each
iteration, so every candidate of every target of the chunk is decoded, rasterized and encoded
in one batch. Candidates the design space cannot repair into a checker-clean design are not
encoded and score ``infeasible_score`` (below any cosine similarity or minus any MSE of
transmissions in [0, 1]), which the swarm leaves.

``method="random"`` is random search in the same box with the same loop (nevergrad's
``RandomSearch``: uniform draws, no start swarm): the baseline any optimizer of this space
must beat at equal calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from dataset.chosen_designs_file import ChosenDesigns, file_sha256
from layout.design import DesignLibrary
from layout.design_space import DesignSpace
from layout.fabrication import apply_size_bias
from layout.generator import GeneratorConfig, generate
from layout.raster import rasterize
from models.objectives import LatentSimilarity, Objective, PredictedMSE
from models.search import ProbeIndex, SearchConfig

if TYPE_CHECKING:
    from dataset.targets_file import Targets
    from models.hybrid import HybridConfig
    from models.inference import InferenceConfig

log = logging.getLogger(__name__)
METHODS = ("pso", "hybrid", "surrogate", "surrogate-hybrid", "random")


@dataclass(frozen=True)
class OptimizeConfig:
    iterations: int = 30
    particles: int = 100
    seed: int = 0
    targets_per_batch: int = 16  # targets optimized together: encoder batches of 16 x particles
    infeasible_score: float = -2.0  # below any cosine similarity
    record_iterations: tuple[int, ...] = ()  # also keep the best so far after these iterations
    start: str = "probes"  # the first swarm: random probes (MOCLIP), or "uniform" in the box
    robust: int = 1  # fabrications sampled per candidate (1: the design as drawn)
    fab_sd_nm: float = 10.0  # their size-bias spread around the fab the model learned from

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= 100_000:
            raise ValueError(f"iterations={self.iterations} must be in [1, 100000]")
        if not 2 <= self.particles <= 100_000:
            raise ValueError(f"particles={self.particles} must be in [2, 100000]")
        if not 1 <= self.targets_per_batch <= 100_000:
            raise ValueError(f"targets_per_batch={self.targets_per_batch} must be >= 1")
        if not 1 <= self.robust <= 64:
            raise ValueError(f"robust={self.robust} must be in [1, 64] sampled fabrications")
        if not (np.isfinite(self.fab_sd_nm) and 0 <= self.fab_sd_nm <= 50):
            raise ValueError(f"fab_sd_nm={self.fab_sd_nm} must be in [0, 50] nm")
        if self.start not in ("probes", "uniform"):
            raise ValueError(f"--start {self.start!r} must be 'probes' or 'uniform'")
        bad = [i for i in self.record_iterations if not 1 <= i <= self.iterations]
        if bad:
            raise ValueError(f"record iterations {bad} lie outside [1, {self.iterations}]")

    @property
    def recorded(self) -> tuple[int, ...]:
        """Iterations whose best-so-far designs are kept, the last always among them."""
        return tuple(sorted({*self.record_iterations, self.iterations}))


@dataclass(frozen=True, eq=False)
class Support:
    """Where the model has seen designs: geometry latents of what the generator makes (a probe
    database), searched exactly with FAISS. A candidate's distance is 1 - its cosine similarity
    to the nearest reference; ``typical_distance`` is the 95th percentile of the references'
    own nearest-neighbour distance, so a candidate farther than that lies outside what the
    model interpolates. ``penalty`` > 0 subtracts ``penalty`` x the excess from the score (the
    newcomer's guide's warning against leaving the interpolation regime, made a term)."""

    index: ProbeIndex
    typical_distance: float
    penalty: float = 0.0

    @classmethod
    def from_latents(
        cls, latents: NDArray[np.float32], penalty: float = 0.0, sample: int = 2000
    ) -> Support:
        if penalty < 0 or not np.isfinite(penalty):
            raise ValueError(f"support penalty {penalty} must be a finite number >= 0")
        index = ProbeIndex.build([latents], SearchConfig(index="flat"))
        rows = np.random.default_rng(0).permutation(latents.shape[0])[:sample]
        score, _ = index.search(latents[rows], 2)
        return cls(index, float(np.quantile(1.0 - score[:, 1], 0.95)), penalty)

    def distance(self, latent: NDArray[np.float32]) -> NDArray[np.float64]:
        score, _ = self.index.search(latent, 1)
        out: NDArray[np.float64] = 1.0 - score[:, 0].astype(np.float64)
        return out


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The best design per target after one iteration."""

    iteration: int
    library: DesignLibrary  # (T,) in target order
    thickness_nm: NDArray[np.float64]
    similarity: NDArray[np.float32]  # the cosine similarity (without any support penalty)
    distance: NDArray[np.float32]  # to the support (NaN without one)


@dataclass(frozen=True, eq=False)
class OptimizeResult:
    """The best design per target and how the search got there."""

    library: DesignLibrary  # (T,) in target order
    thickness_nm: NDArray[np.float64]
    similarity: NDArray[np.float32]  # (T,) of the best design
    found_at: NDArray[np.int32]  # (T,) the iteration (1-based) the best was proposed in
    snapshots: tuple[Snapshot, ...]  # at cfg.recorded, the last being the result itself
    distance: NDArray[np.float32]  # (T,) of the best design from the support (NaN without)
    best_by_iteration: NDArray[np.float32]  # (iterations, T): best score so far
    proposals: int
    infeasible: int  # proposals no repair made checker-clean
    repaired: int  # proposals made clean by dropping primitives
    encoded: int  # designs through the encoder
    wall_s: float

    @property
    def infeasible_fraction(self) -> float:
        return self.infeasible / max(self.proposals, 1)

    @property
    def repaired_fraction(self) -> float:
        return self.repaired / max(self.proposals, 1)


@dataclass
class Robust:
    """Scores over sampled fabrications (``--robust K``): each candidate is rasterized K times
    with its widths and heights grown (ring holes shrunk) by a size bias drawn from N(0,
    ``sd_nm``), and scored by the mean objective. The bias is around zero because the model
    learned from pads the fab already made with its mean bias: its nominal design is what it
    maps to a spectrum as fabricated, so only the pad-to-pad spread is sampled."""

    samples: int
    sd_nm: float
    rng: np.random.Generator

    def mean_score(
        self,
        objective: Objective,
        library: DesignLibrary,
        params_um: NDArray[np.float64],
        queries: NDArray[np.float32],
    ) -> NDArray[np.float64]:
        n, k = len(library), self.samples
        rows = np.repeat(np.arange(n), k)
        bias = self.rng.normal(0.0, self.sd_nm, n * k)
        made = apply_size_bias(library.take(rows), bias)
        scores, _ = objective.score(rasterize(made), params_um[rows], queries[rows])
        out: NDArray[np.float64] = scores.reshape(n, k).mean(axis=1)
        return out


@dataclass(frozen=True, eq=False)
class Scored:
    """One batch of candidates: the optimizer's score, the objective's own value (a cosine
    similarity, or minus a predicted MSE; without the support penalty) and the distance to the
    support (NaN where not measured), the designs and their thicknesses."""

    score: NDArray[np.float64]
    similarity: NDArray[np.float64]
    distance: NDArray[np.float64]
    library: DesignLibrary
    thickness_nm: NDArray[np.float64]
    feasible: NDArray[np.bool_]
    repaired: int
    calls: int  # designs through the network (each sampled fabrication counts)


def score_candidates(
    space: DesignSpace,
    objective: Objective,
    x: NDArray[np.float64],
    queries: NDArray[np.float32],
    infeasible_score: float,
    support: Support | None = None,
    robust: Robust | None = None,
) -> Scored:
    """Each candidate against its query (one query row per candidate): the objective (with
    ``robust``, its mean over sampled fabrications), less the support penalty when the support
    has one (the distance is measured only then: a probe database of millions makes it the
    dearest part of a score); infeasible ones score ``infeasible_score``."""
    decoded = space.decode(x)
    n = x.shape[0]
    score = np.full(n, infeasible_score, dtype=np.float64)
    similarity = np.full(n, np.nan)
    distance = np.full(n, np.nan)
    ok = np.flatnonzero(decoded.feasible)
    calls = 0
    if ok.size:
        lib = decoded.library.take(ok)
        params = np.stack([lib.period_nm, decoded.thickness_nm[ok]], axis=1) / 1000.0
        penalized = support is not None and support.penalty > 0
        latent = None
        if robust is not None and robust.samples > 1:
            # The nominal design is scored only when the penalty needs its latent.
            similarity[ok] = robust.mean_score(objective, lib, params, queries[ok])
            calls += ok.size * robust.samples
            if penalized:
                _, latent = objective.score(rasterize(lib), params, queries[ok])
                calls += ok.size
        else:
            similarity[ok], latent = objective.score(rasterize(lib), params, queries[ok])
            calls += ok.size
        # A non-finite score (a network gone NaN on some input) must never look best, nor
        # hide a finite one from the argmax: it scores as an infeasible design.
        similarity[~np.isfinite(similarity)] = np.nan
        score[ok] = np.where(np.isfinite(similarity[ok]), similarity[ok], infeasible_score)
        if support is not None and penalized:
            if latent is None:
                raise ValueError(f"a support penalty needs latents; {objective.name} has none")
            distance[ok] = support.distance(latent)
            excess = np.maximum(distance[ok] - support.typical_distance, 0.0)
            score[ok] -= support.penalty * excess
    return Scored(
        score,
        similarity,
        distance,
        decoded.library,
        decoded.thickness_nm,
        decoded.feasible,
        int(decoded.repaired.sum()),
        calls,
    )


def support_distance(
    objective: Objective,
    support: Support,
    library: DesignLibrary,
    thickness_nm: NDArray[np.float64],
) -> NDArray[np.float32]:
    """Each design's distance from the support (its latent's, so a latent objective only)."""
    params = np.stack([library.period_nm, thickness_nm], axis=1) / 1000.0
    if not isinstance(objective, LatentSimilarity):
        raise ValueError(f"the support is measured in latents; {objective.name} has none")
    return support.distance(objective.encoder(rasterize(library), params)).astype(np.float32)


def random_probes(space: DesignSpace, count: int, seed: list[int]) -> NDArray[np.float64]:
    """``count`` generator designs (at random allowed thicknesses) as points of the box: the
    swarm starts where the model has seen designs, as MOCLIP's starts from random probes."""
    config = GeneratorConfig(
        periods_nm=space.periods_nm,
        max_primitives=space.max_primitives,
        kinds=space.kinds,
        rules=space.rules,
        batch_size=max(256, 2 * count),
    )
    rng = np.random.default_rng(seed)
    library = generate(count, int(rng.integers(2**31)), config)
    options = np.asarray(space.thicknesses_nm, dtype=np.float64)
    return space.encode(library, options[rng.integers(0, options.size, count)])


def optimize_pso(
    space: DesignSpace,
    objective: Objective,
    queries: NDArray[np.float32],
    cfg: OptimizeConfig,
    *,
    support: Support | None = None,
    start_points: NDArray[np.float64] | None = None,
    progress: bool = False,
    random_search: bool = False,
) -> OptimizeResult:
    """PSO over ``space`` for each target (rows of ``queries``: :mod:`models.objectives`); with
    a ``support``, the best designs' distances from it are reported and, when it has a penalty,
    scores are penalized outside it (:class:`Support`). ``start_points`` (T, P, D) replaces the
    first swarm of each target (a retrieval's best probes: a warm start). ``random_search``
    draws the box uniformly instead (module docstring)."""
    if start_points is not None and start_points.shape != (
        queries.shape[0],
        cfg.particles,
        space.dimension,
    ):
        raise ValueError(
            f"start points have shape {start_points.shape}; expected "
            f"({queries.shape[0]}, {cfg.particles}, {space.dimension})"
        )
    import nevergrad as ng

    start = time.perf_counter()
    t_count, p = queries.shape[0], cfg.particles
    best = np.full(t_count, -np.inf)
    found = np.zeros(t_count, dtype=np.int32)
    history = np.full((cfg.iterations, t_count), np.nan, dtype=np.float32)
    best_rows: list[DesignLibrary | None] = [None] * t_count
    best_thick = np.zeros(t_count)
    best_sim = np.zeros(t_count)
    best_dist = np.full(t_count, np.nan)
    kept: dict[int, list[tuple[DesignLibrary | None, float, float, float]]] = {
        i: [(None, 0.0, 0.0, 0.0)] * t_count for i in cfg.recorded
    }
    counts = {"proposals": 0, "infeasible": 0, "repaired": 0, "encoded": 0}
    chunks = range(0, t_count, cfg.targets_per_batch)
    with tqdm(
        total=t_count * cfg.iterations,
        desc="optimize",
        unit="target-iteration",
        disable=not progress,
    ) as bar:
        for first in chunks:
            targets = np.arange(first, min(first + cfg.targets_per_batch, t_count))
            optimizers = []
            for t in targets:
                param = ng.p.Array(shape=(space.dimension,), lower=0.0, upper=1.0)
                param.random_state = np.random.RandomState([cfg.seed, int(t)])
                family = (
                    ng.optimizers.RandomSearch if random_search else ng.families.ConfPSO(popsize=p)
                )
                optimizers.append(family(param, budget=p * cfg.iterations, num_workers=p))
            for t, opt in zip(targets, optimizers, strict=True):
                if random_search:
                    continue
                if start_points is not None:
                    first_swarm = start_points[t]
                elif cfg.start == "probes":
                    first_swarm = random_probes(space, p, [cfg.seed, int(t)])
                else:
                    continue
                for x0 in first_swarm:
                    opt.suggest(x0)
            rows = np.repeat(queries[targets], p, axis=0)
            robust = (
                Robust(cfg.robust, cfg.fab_sd_nm, np.random.default_rng([cfg.seed, int(first), 7]))
                if cfg.robust > 1
                else None
            )
            for it in range(cfg.iterations):
                asked = [[opt.ask() for _ in range(p)] for opt in optimizers]
                x = np.stack([c.value for group in asked for c in group])
                got = score_candidates(
                    space, objective, x, rows, cfg.infeasible_score, support, robust
                )
                scores = got.score
                counts["proposals"] += x.shape[0]
                counts["infeasible"] += int((~got.feasible).sum())
                counts["repaired"] += got.repaired
                counts["encoded"] += got.calls
                for j, (t, opt, group) in enumerate(zip(targets, optimizers, asked, strict=True)):
                    mine = scores[j * p : (j + 1) * p]
                    for c, s in zip(group, mine, strict=True):
                        opt.tell(c, -float(s))  # nevergrad minimizes
                    # Only a clean design can be the best, however a penalty scores it.
                    clean = got.feasible[j * p : (j + 1) * p]
                    scored = np.isfinite(got.similarity[j * p : (j + 1) * p])
                    eligible = np.where(clean & scored, mine, -np.inf)
                    k = int(np.argmax(eligible))
                    if eligible[k] > best[t]:
                        i = j * p + k
                        best[t], found[t] = mine[k], it + 1
                        best_rows[t] = got.library.take(np.array([i]))
                        best_thick[t] = got.thickness_nm[i]
                        best_sim[t], best_dist[t] = got.similarity[i], got.distance[i]
                    history[it, t] = best[t] if np.isfinite(best[t]) else np.nan
                    if it + 1 in kept:
                        kept[it + 1][t] = (best_rows[t], best_thick[t], best_sim[t], best_dist[t])
                bar.update(len(targets))
    missing = [int(t) for t in range(t_count) if best_rows[t] is None]
    if missing:
        raise RuntimeError(
            f"no feasible design was proposed for targets {missing[:5]}; the constraints leave "
            "too little room"
        )
    snapshots = []
    for i, best_rows_i in sorted(kept.items()):
        lib = DesignLibrary.concatenate([b for b, _, _, _ in best_rows_i if b is not None])
        thick = np.array([t for _, t, _, _ in best_rows_i])
        distance = np.array([d for _, _, _, d in best_rows_i], dtype=np.float32)
        if support is not None and support.penalty == 0:  # not measured while scoring
            distance = support_distance(objective, support, lib, thick)
        snapshots.append(
            Snapshot(
                i, lib, thick, np.array([v for _, _, v, _ in best_rows_i], np.float32), distance
            )
        )
    last = snapshots[-1]
    return OptimizeResult(
        library=last.library,
        thickness_nm=last.thickness_nm,
        similarity=last.similarity,
        distance=last.distance,
        found_at=found,
        snapshots=tuple(snapshots),
        best_by_iteration=history,
        wall_s=time.perf_counter() - start,
        **counts,
    )


def optimize(
    model_dir: Path,
    targets: Targets,
    targets_path: Path,
    space: DesignSpace,
    cfg: OptimizeConfig,
    inference: InferenceConfig,
    *,
    method: str = "pso",
    probes: list[Path] | None = None,
    support_penalty: float = 0.0,
    hybrid: HybridConfig | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> tuple[ChosenDesigns, OptimizeResult]:
    """``metascan design optimize``: each target's best design, as chosen designs (rank 1),
    once per recorded iteration with ``database_size`` = the proposals per target so far
    (particles x iteration): ``design evaluate`` then gives the measured error against
    iterations, comparable with a retrieval from as many probes.

    ``method``: ``pso`` and ``hybrid`` (with ``hybrid``'s steps) on the contrastive model's
    latent similarity; ``surrogate`` and ``surrogate-hybrid`` the same on a forward surrogate's
    predicted weighted MSE (``model_dir`` is then the surrogate's); ``random`` random search on
    the latent similarity. A surrogate's designs have no latent: their ``similarity`` column is
    NaN and the predicted weighted MSE goes into the provenance."""
    import torch

    from models.inference import encode_geometry, encode_spectra, predict_geometry, prepare
    from models.inverse import check_bands
    from models.model_dir import load_model, load_surrogate, model_identity, model_material

    if method not in METHODS:
        raise ValueError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    refined = method in ("hybrid", "surrogate-hybrid")
    if refined != (hybrid is not None):
        raise ValueError(f"--method {method}: gradient steps go with the hybrids only")
    if threads is not None:
        torch.set_num_threads(threads)
    material = model_material(model_dir)
    targets.check_material(material, f"model {model_dir}", f"targets {targets_path}")
    objective: Objective
    if method.startswith("surrogate"):
        if probes or support_penalty:
            raise ValueError("--probes and --support-penalty measure latents; a surrogate has none")
        surrogate = prepare(load_surrogate(model_dir), inference)
        check_bands(surrogate, targets.wavelength_nm, "the targets file")

        def predictor(
            images: NDArray[np.bool_], params_um: NDArray[np.float64]
        ) -> NDArray[np.float32]:
            return predict_geometry(surrogate, images, params_um, inference)

        objective = PredictedMSE(predictor, surrogate)
        queries = PredictedMSE.queries(targets.spectra, targets.weight)
    else:
        model = prepare(load_model(model_dir), inference)
        check_bands(model, targets.wavelength_nm, "the targets file")
        queries = encode_spectra(model, targets.spectra, inference)

        def encoder(
            images: NDArray[np.bool_], params_um: NDArray[np.float64]
        ) -> NDArray[np.float32]:
            return encode_geometry(model, images, params_um, inference)

        objective = LatentSimilarity(encoder, model)

    support = None
    start_points = None
    if probes:
        from dataset.probes_file import read_probes

        database = read_probes(probes, model_identity(model_dir))
        support = Support.from_latents(database.latent, support_penalty)
        if hybrid is not None:  # warm start: each target's most similar probes in the space
            inside = np.flatnonzero(space.contains(database.library, database.thickness_nm))
            if cfg.particles > inside.size:
                raise ValueError(
                    f"--particles {cfg.particles} is more than the {inside.size} probes of "
                    f"{probes[0]} that meet the design constraints, to warm-start from"
                )
            index = ProbeIndex.build([database.latent[inside]], SearchConfig(index="flat"))
            _, found = index.search(queries, cfg.particles)
            rows = inside[found.ravel()]
            start_points = space.encode(
                database.library.take(rows), database.thickness_nm[rows]
            ).reshape(len(targets), cfg.particles, space.dimension)
    elif support_penalty:
        raise ValueError("--support-penalty needs --probes: the designs the model interpolates")
    objective_note = (
        "predicted weighted MSE of the forward surrogate"
        if method.startswith("surrogate")
        else "cosine similarity of the latents"
    )
    if hybrid is None:
        result = optimize_pso(
            space,
            objective,
            queries,
            cfg,
            support=support,
            progress=progress,
            random_search=method == "random",
        )
        described = (
            "random search (nevergrad RandomSearch, uniform in the box)"
            if method == "random"
            else "pso (nevergrad ConfPSO)"
        )
    else:
        from models.hybrid import optimize_hybrid

        result = optimize_hybrid(
            objective,
            space,
            queries,
            cfg,
            hybrid,
            support=support,
            start_points=start_points,
            progress=progress,
        )
        described = (
            f"hybrid: {cfg.iterations} PSO iterations from "
            f"{'the most similar probes' if start_points is not None else 'random probes'}, "
            f"then {hybrid.steps} gradient steps through the soft rasterizer, snapped and "
            "re-scored exactly"
        )
    described += f", on the {objective_note}"
    latent_objective = isinstance(objective, LatentSimilarity)
    # Last iteration first (as a retrieval puts its largest database first): the library then
    # starts with each target's final design, which is what `layout chip` of its first rows takes.
    shots = result.snapshots[::-1]
    every = DesignLibrary.concatenate([shot.library for shot in shots])
    _, first, row = np.unique(every.design_id, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    t_count = len(targets)
    chosen = ChosenDesigns(
        library=every.take(first[order]),
        target_id=tuple(targets.target_id) * len(shots),
        rank=np.ones(t_count * len(shots), dtype=np.int32),
        similarity=np.concatenate(
            [shot.similarity if latent_objective else np.full(t_count, np.nan) for shot in shots]
        ).astype(np.float32),
        design_row=position[row.ravel()].astype(np.int64),
        thickness_nm=np.concatenate([shot.thickness_nm for shot in shots]),
        database_size=np.repeat(
            np.array([cfg.particles * shot.iteration for shot in shots], dtype=np.int64), t_count
        ),
        model_identity=model_identity(model_dir),
        targets_sha256=file_sha256(targets_path),
        material=material,
        provenance={
            "command": "metascan design optimize",
            "method": described,
            "objective": objective.name,
            "predicted_weighted_mse": None
            if latent_objective
            else (-result.similarity.astype(np.float64)).tolist(),
            "hybrid": None if hybrid is None else asdict(hybrid),
            "model": str(model_dir),
            "targets": str(targets_path),
            "config": asdict(cfg),
            "space": space.describe(),
            "found_at_iteration": result.found_at.tolist(),
            "support": None
            if support is None
            else {
                "probes": [str(p) for p in probes or []],
                "typical_distance": support.typical_distance,
                "penalty": support.penalty,
                "distance": result.snapshots[-1].distance.tolist(),
            },
            "best_by_iteration": result.best_by_iteration.tolist(),
            "infeasible_fraction": result.infeasible_fraction,
            "repaired_fraction": result.repaired_fraction,
            "encoded": result.encoded,
            "wall_s": result.wall_s,
        },
    )
    log.info("optimized %d targets in %.1f s", len(targets), result.wall_s)
    return chosen, result

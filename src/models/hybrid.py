"""The hybrid (the newcomer's guide, §III.A): a few global PSO iterations, then gradient ascent
of the objective (the latent similarity, or minus a surrogate's predicted MSE:
:mod:`models.objectives`) through the soft rasterizer (:mod:`models.soft_raster`) into the
network, then snap to the grid, check, and re-score with the exact raster.

Gradient steps move the best design's continuous shape (centres, sizes, ring holes, in nm)
with its kinds, period and thickness held; the edges sharpen geometrically from
``edge_px_start`` to ``edge_px_end`` over the steps. Every ``snap_every`` steps (and at the end)
the shapes are projected onto the design space (clamped into the generator's limits, floored to
the grid, repaired by the checker) and scored exactly; a target keeps the best exact score seen,
so refinement never returns worse than the swarm gave it (with ``--robust``, exact scores are
means over sampled fabrications, as the swarm's; the gradient follows the nominal design). Encoder calls are counted as
forward-pass equivalents: a gradient step is a forward and a backward pass, counted 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from layout.design import DesignLibrary
from layout.design_space import DesignSpace
from models.objectives import Objective, frozen, thaw
from models.optimize import (
    OptimizeConfig,
    OptimizeResult,
    Robust,
    Snapshot,
    Support,
    optimize_pso,
    score_candidates,
    support_distance,
)
from models.soft_raster import soft_rasterize

GRADIENT_STEP_CALLS = 3  # a forward and a backward pass, in forward-pass equivalents


@dataclass(frozen=True)
class HybridConfig:
    steps: int = 40
    lr_nm: float = 4.0  # Adam's step, nm per step at most about this
    edge_px_start: float = 2.0
    edge_px_end: float = 0.25
    snap_every: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 100_000:
            raise ValueError(f"steps={self.steps} must be in [1, 100000]")
        if not 0 < self.lr_nm <= 100:
            raise ValueError(f"lr_nm={self.lr_nm} must be in (0, 100] nm")
        if not 0 < self.edge_px_end <= self.edge_px_start <= 10:
            raise ValueError("edges must sharpen: 0 < edge_px_end <= edge_px_start <= 10 px")
        if not 1 <= self.snap_every <= self.steps:
            raise ValueError(f"snap_every={self.snap_every} must be in [1, steps]")


def _shapes(library: DesignLibrary) -> NDArray[np.float64]:
    return np.stack(
        [
            library.center_x_nm,
            library.center_y_nm,
            library.width_nm,
            library.height_nm,
            library.inner_width_nm,
            library.inner_height_nm,
        ],
        axis=-1,
    )


def refine(
    objective: Objective,
    space: DesignSpace,
    library: DesignLibrary,
    thickness_nm: NDArray[np.float64],
    similarity: NDArray[np.float32],
    queries: NDArray[np.float32],
    cfg: HybridConfig,
    support: Support | None = None,
    robust: Robust | None = None,
) -> tuple[DesignLibrary, NDArray[np.float64], NDArray[np.float32], int]:
    """Gradient-refine one design per target (module docstring): (designs, thicknesses, exact
    objective values, network calls)."""
    held = frozen(objective)  # gradients flow to the shapes only; the net is given back as it came
    try:
        return _refine(objective, space, library, thickness_nm, similarity, queries, cfg,
                       support, robust)  # fmt: skip
    finally:
        thaw(held)


def _refine(
    objective: Objective,
    space: DesignSpace,
    library: DesignLibrary,
    thickness_nm: NDArray[np.float64],
    similarity: NDArray[np.float32],
    queries: NDArray[np.float32],
    cfg: HybridConfig,
    support: Support | None,
    robust: Robust | None,
) -> tuple[DesignLibrary, NDArray[np.float64], NDArray[np.float32], int]:
    period = torch.tensor(library.period_nm, dtype=torch.float32)
    kind = torch.tensor(library.kind.astype(np.int64))
    shape = torch.tensor(_shapes(library), dtype=torch.float32, requires_grad=True)
    params = torch.tensor(np.stack([library.period_nm, thickness_nm], axis=1) / 1000.0).float()
    q = torch.from_numpy(np.ascontiguousarray(queries))
    optimizer = torch.optim.Adam([shape], lr=cfg.lr_nm)
    best_thick, best_sim = thickness_nm.copy(), similarity.astype(np.float32).copy()
    best_rows: list[DesignLibrary] = [library.take(np.array([i])) for i in range(len(library))]
    calls = 0
    ratio = cfg.edge_px_end / cfg.edge_px_start
    with torch.enable_grad():
        for step in range(cfg.steps):
            edge = cfg.edge_px_start * ratio ** (step / max(cfg.steps - 1, 1))
            image = soft_rasterize(period, kind, shape, edge)
            loss = -objective.soft_score(image, params, q).sum()
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            calls += GRADIENT_STEP_CALLS * len(library)
            if (step + 1) % cfg.snap_every and step + 1 != cfg.steps:
                continue
            snapped = _project(space, library, shape.detach().numpy(), thickness_nm)
            got = score_candidates(space, objective, snapped, queries, -2.0, support, robust)
            calls += got.calls
            better = np.flatnonzero(got.feasible & (got.similarity > best_sim))
            for i in better:
                best_rows[i] = got.library.take(np.array([i]))
                best_thick[i] = got.thickness_nm[i]
                best_sim[i] = got.similarity[i]
    return DesignLibrary.concatenate(best_rows), best_thick, best_sim, calls


def _project(
    space: DesignSpace,
    library: DesignLibrary,
    shape_nm: NDArray[np.float64],
    thickness_nm: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Continuous shapes as points of the box: :meth:`DesignSpace.encode` clamps them into the
    generator's limits, and decoding floors them to the grid and repairs."""
    present = library.kind >= 0
    cols = [np.where(present, shape_nm[..., i], 0.0) for i in range(6)]
    moved = DesignLibrary.from_arrays(library.period_nm, library.kind, *cols)
    return space.encode(moved, thickness_nm)


def optimize_hybrid(
    objective: Objective,
    space: DesignSpace,
    queries: NDArray[np.float32],
    pso: OptimizeConfig,
    cfg: HybridConfig,
    *,
    support: Support | None = None,
    start_points: NDArray[np.float64] | None = None,
    progress: bool = False,
) -> OptimizeResult:
    """``pso.iterations`` global iterations, then :func:`refine`; the result's last snapshot is
    the refined designs, its ``iteration`` the global iterations plus the refinement's calls
    expressed in swarm iterations (calls / particles), so ``design evaluate`` places it fairly."""
    start = time.perf_counter()
    swarm = optimize_pso(
        space,
        objective,
        queries,
        pso,
        support=support,
        start_points=start_points,
        progress=progress,
    )
    lib, thick, sim, calls = refine(
        objective,
        space,
        swarm.library,
        swarm.thickness_nm,
        swarm.similarity,
        queries,
        cfg,
        support,
        Robust(pso.robust, pso.fab_sd_nm, np.random.default_rng([pso.seed, 11]))
        if pso.robust > 1
        else None,
    )
    per_target = calls / len(queries)
    extra = int(np.ceil(per_target / pso.particles))
    distance = (
        support_distance(objective, support, lib, thick)
        if support is not None
        else np.full(len(queries), np.nan, dtype=np.float32)
    )
    final = Snapshot(pso.iterations + extra, lib, thick, sim, distance)
    return OptimizeResult(
        library=lib,
        thickness_nm=thick,
        similarity=sim,
        distance=distance,
        found_at=swarm.found_at,
        snapshots=(*swarm.snapshots, final),
        best_by_iteration=swarm.best_by_iteration,
        proposals=swarm.proposals,
        infeasible=swarm.infeasible,
        repaired=swarm.repaired,
        encoded=swarm.encoded + calls,
        wall_s=time.perf_counter() - start,
    )

"""The hybrid: the soft rasterizer is the exact raster once sharp and passes gradients; gradient
refinement after the swarm never returns a worse design, and what it returns is clean and
scored with the exact raster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_data import untrained_model

from layout.checker import check_library
from layout.design import Kind
from layout.design_space import DesignSpace
from layout.generator import generate
from layout.raster import rasterize
from layout.rules import DesignRules
from models.hybrid import GRADIENT_STEP_CALLS, HybridConfig, optimize_hybrid
from models.inference import InferenceConfig, encode_geometry, prepare
from models.objectives import LatentSimilarity
from models.optimize import OptimizeConfig
from models.soft_raster import soft_rasterize


def shapes(lib):  # type: ignore[no-untyped-def]
    cols = ("center_x_nm", "center_y_nm", "width_nm", "height_nm", "inner_width_nm",
            "inner_height_nm")  # fmt: skip
    return torch.tensor(np.stack([getattr(lib, c) for c in cols], axis=-1), dtype=torch.float32)


def test_soft_raster_sharpens_to_the_exact_raster_and_has_gradients() -> None:
    lib = generate(100, seed=3)
    exact = rasterize(lib)
    period = torch.tensor(lib.period_nm, dtype=torch.float32)
    kind = torch.tensor(lib.kind.astype(np.int64))
    errors = []
    for edge in (2.0, 0.5, 0.1):
        soft = soft_rasterize(period, kind, shapes(lib), edge).numpy()
        errors.append(float(np.abs(soft - exact).mean()))
        assert ((soft > 0.5) != exact).mean() < 1e-4
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    shape = shapes(lib).requires_grad_(True)
    soft_rasterize(period, kind, shape, 1.0).sum().backward()  # type: ignore[no-untyped-call]
    grad = shape.grad
    assert grad is not None
    present = torch.tensor(lib.kind >= 0)
    widths = grad[..., 2][present]
    assert (widths > 0).float().mean() > 0.9  # wider primitives fill more pixels
    assert float(grad[..., 2][~present].abs().max()) == 0.0
    with pytest.raises(ValueError, match="edge_px"):
        soft_rasterize(period, kind, shape, 0.0)


def test_hybrid_refines_without_ever_returning_worse() -> None:
    torch.set_num_threads(1)
    inference = InferenceConfig(precision="fp32")
    model = prepare(untrained_model(0), inference)
    space = DesignSpace((400, 500), (178.0,), (Kind.RECTANGLE, Kind.ELLIPSE), 2, DesignRules())

    def encoder(images, params):  # type: ignore[no-untyped-def]
        return encode_geometry(model, images, params, inference)

    targets = generate(3, seed=9)  # reachable targets: latents of real designs
    queries = encoder(
        rasterize(targets), np.stack([targets.period_nm, np.full(3, 178.0)], axis=1) / 1000
    )
    pso = OptimizeConfig(iterations=3, particles=8, seed=1, targets_per_batch=3)
    cfg = HybridConfig(steps=6, snap_every=3, lr_nm=5.0)
    trainable = [p.requires_grad for p in model.parameters()]
    result = optimize_hybrid(LatentSimilarity(encoder, model), space, queries, pso, cfg)
    assert [p.requires_grad for p in model.parameters()] == trainable  # given back as it came
    swarm_best = result.snapshots[-2].similarity  # the swarm's own best, before the steps
    assert (result.similarity >= swarm_best - 1e-6).all()
    assert check_library(result.library, space.rules).passed.all()
    again = encoder(
        rasterize(result.library),
        np.stack([result.library.period_nm, result.thickness_nm], axis=1) / 1000,
    )
    np.testing.assert_allclose((again * queries).sum(1), result.similarity, atol=1e-4)
    # The swarm's encodings plus a forward and a backward pass per step and target, counted 3.
    assert result.encoded > GRADIENT_STEP_CALLS * cfg.steps * 3 + result.proposals // 2
    assert result.snapshots[-1].iteration > pso.iterations

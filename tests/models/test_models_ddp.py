"""Two Gloo ranks on the CPU take the same optimizer step as one process on the global batch.

The test model uses GroupNorm and LayerNorm instead of batch norm: batch-norm statistics are
per rank (each sees half the batch), so with it the sharded step legitimately differs from the
global-batch step; everything else (the gathered loss, the gradient averaging) must agree.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from models.config import GeometryEncoderConfig, ModelConfig, SpectraEncoderConfig
from models.model import ContrastiveModel
from models.tasks import ContrastiveLoss
from models.train import train_step

CFG = ModelConfig(
    name="ddp-test",
    geometry=GeometryEncoderConfig(
        stem_width=8, widths=(8, 16), depths=(1, 1), param_hidden=8, norm="group"
    ),
    spectra=SpectraEncoderConfig(hidden=(32,), norm="layer"),
)
BATCH = 8


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(BATCH, 128, 128, generator=gen) > 0.5).to(torch.uint8)
    params = 0.2 + 0.4 * torch.rand(BATCH, 2, generator=gen)
    spectra = torch.rand(BATCH, 2, 29, generator=gen)
    return image, params, spectra


def _model() -> ContrastiveModel:
    torch.manual_seed(0)
    model = ContrastiveModel(CFG)
    for p in model.geometry_encoder.conds.parameters():  # FiLM off identity, so it is tested
        torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(1))
    return model


def _step(model: torch.nn.Module, shard: slice) -> float:
    image, params, spectra = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return train_step(
        model, ContrastiveLoss(gather_with_grad=True), opt, image[shard], params[shard], spectra[shard],
        torch.device("cpu"),
    )  # fmt: skip


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        model = _model()
        per = BATCH // world
        loss = _step(DistributedDataParallel(model), slice(rank * per, (rank + 1) * per))
        if rank == 0:
            torch.save({"state": model.state_dict(), "loss": loss}, out)
        # Both ranks leave together: a rank tearing gloo down while the other still talks to it
        # aborts the process ("terminate called without an active exception") on a busy machine.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_step_like_one_process(tmp_path: Path) -> None:
    single = _model()
    loss = _step(single, slice(None))
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    assert abs(result["loss"] - loss) < 1e-5  # each rank's loss is over the global batch
    for key, value in single.state_dict().items():
        torch.testing.assert_close(result["state"][key], value, rtol=1e-5, atol=1e-6)
    moved = sum(
        float((v - _model().state_dict()[k]).abs().sum()) for k, v in single.state_dict().items()
    )
    assert moved > 0  # the step changed the weights, so the equality is not vacuous

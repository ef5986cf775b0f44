"""The few collective operations a training run needs, each a no-op on one process.

Under ``torchrun`` every rank must take the same decisions (stop, refit the schedule) at the
same step, or the collectives of DistributedDataParallel deadlock: decisions from a clock come
from rank 0, and a stop anywhere stops everyone.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def join_process_group() -> tuple[int, int, int]:
    """(rank, world size, local rank), joining the process group torchrun describes."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any: all ranks must stop together."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_rank0(values: list[float], world: int, device: torch.device) -> list[float]:
    """Rank 0's values on every rank: decisions from a clock must not differ between ranks."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.tolist()]


def gathered(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, in rank order (a checkpoint keeps each rank's RNG state)."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()

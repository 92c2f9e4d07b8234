"""torchrun support: the same `train` or pseudo-labelling call runs single-process or across ranks.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; when they say more than one process, the process
group is initialised (NCCL on CUDA, gloo on CPU). Training wraps the model in DDP and each rank
reads its own slice of every epoch; pseudo-labelling gives each rank whole shards. Only rank 0
writes shared files or calls the logger. Every collective waits at most the group's timeout
(`DEPTH_DISTILL_RANK_TIMEOUT_S`, default 4 hours: a rank that finished its shards waits there
for the slowest), so a rank that hangs fails the run instead of holding it forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # initialised here, so torn down here

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


TIMEOUT_ENV = "DEPTH_DISTILL_RANK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 4 * 3600


def rank_timeout() -> timedelta:
    """How long a collective (a barrier, a gather) waits for every rank."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device: torch.device) -> DistContext:
    """Initialise the process group when launched by torchrun; a no-op context otherwise."""
    if not launched_by_torchrun():
        return DistContext()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = not dist.is_initialized()
    if owns_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=rank_timeout()
        )
    return DistContext(rank, local_rank, world_size, owns_group)


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per process under torchrun; CPU stays CPU."""
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    if not ctx.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def gather_objects(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not ctx.enabled:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_across_ranks(
    values: dict[str, float], ctx: DistContext, device: torch.device
) -> dict[str, float]:
    """Average scalar metrics over ranks (the logged train loss is the global batch's)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.tolist()))


def min_across_ranks(values: list[int], ctx: DistContext, device: torch.device) -> list[int]:
    """Element-wise minimum over ranks (e.g. batches per epoch: every rank must step alike)."""
    if not ctx.enabled or not values:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return [int(v) for v in tensor.tolist()]


def parameter_checksum(model: nn.Module) -> torch.Tensor:
    """Sum and sum of squares of all parameters in float64: equal on in-sync replicas."""
    total = torch.zeros(2, dtype=torch.float64)
    for param in unwrap(model).parameters():
        p = param.detach().double().cpu()
        total += torch.stack([p.sum(), (p * p).sum()])
    return total


def assert_in_sync(
    model: nn.Module, ctx: DistContext, device: torch.device, rtol: float = 1e-6
) -> None:
    """Raise if the replicas' parameters diverged (a missed all-reduce or a rank-local update)."""
    if not ctx.enabled:
        return
    local = parameter_checksum(model).to(device)
    high, low = local.clone(), local.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    spread = (high - low).abs().max().item()
    scale = local.abs().max().item() + 1e-12
    if spread > rtol * scale:
        raise RuntimeError(
            f"DDP replicas out of sync on rank {ctx.rank}: parameter checksum spread {spread:.3e}"
        )

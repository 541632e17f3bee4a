"""DDP set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

Without those variables everything runs in one process and every helper is a no-op.
NCCL is used on CUDA, gloo on CPU. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False   # this process group was created by `setup_distributed`

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for but CUDA is not available; use --device cpu")
    return device


def setup_distributed(requested_device: str | None, timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group described by torchrun's environment, or return a single-process context.
    A collective that waits more than `timeout_minutes` (a rank that died or hangs) fails the run
    instead of blocking the others for the backend's default of hours."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(requested_device)
    if world_size <= 1:
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size, timeout=timedelta(minutes=timeout_minutes))
        initialised_here = True
    return DistributedContext(rank, world_size, local_rank, device, initialised_here)


def teardown_distributed(context: DistributedContext) -> None:
    if context.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum over ranks (in place); identity without DDP."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step of an
    epoch the replicas' running statistics differ by one local update; this makes the
    replicas identical again before validation and checkpointing.
    """
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def broadcast_object(value, context: DistributedContext):
    """Rank 0's `value` on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_objects(value, context: DistributedContext) -> list:
    """Every rank's `value`, in rank order (a one-element list without DDP)."""
    if not context.enabled:
        return [value]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered

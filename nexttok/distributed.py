"""Data-parallel plumbing for `torchrun --nproc_per_node K -m nexttok train ...`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we then join a process group (nccl on CUDA, gloo on
the CPU) and wrap the model in DistributedDataParallel. Every rank builds the same global batch from
(seed, step) and trains on its own slice of it, so K processes see exactly the batches one process
would, and the gradient DDP averages is the global batch's gradient.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def slice(self, batch_size: int) -> slice:
        per_rank = batch_size // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def setup(device_name: str) -> tuple[Shard, str]:
    """Join torchrun's process group if there is one. Returns this process's shard and the device name
    it should use ("cuda:LOCAL_RANK" for a CUDA run under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Shard(), device_name
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    return Shard(dist.get_rank(), dist.get_world_size()), device_name


def mean_over_ranks(value: torch.Tensor, shard: Shard) -> torch.Tensor:
    if shard.world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= shard.world
    return value


def any_rank(signum: int | None, shard: Shard) -> int | None:
    """A stop signal that some rank received (e.g. one rank saw Ctrl-C), on every rank, so they stop
    together; None when no rank received one."""
    if shard.world == 1:
        return signum
    value = torch.tensor(float(signum or 0))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item()) or None


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        dist.barrier()


def teardown(shard: Shard) -> None:
    if shard.world > 1 and dist.is_initialized():
        dist.destroy_process_group()

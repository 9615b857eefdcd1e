"""Multi-process training on PyTorch's own engine (``torchrun`` → DistributedDataParallel).

``torchrun --nproc_per_node=N -m unetkit train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK (and the
rendezvous address); :func:`init_distributed` reads them, picks gloo on CPU and NCCL on GPU. Every
rank draws its own share of each global batch (see :class:`RankBatchSampler`), so N processes see
exactly the samples one process would with the same global batch size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``; ``enabled`` when world_size > 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across_ranks(value: float, info: DistInfo) -> float:
    """Average a Python number over all ranks (identity for one process)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision (e.g. 'time is up') for every rank, so all stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


class RankBatchSampler(torch.utils.data.Sampler):
    """Index batches of one epoch for one rank.

    Step ``s`` of the epoch covers global sample indices ``[s·B, (s+1)·B)``; rank ``r`` takes the
    ``r``-th of ``world_size`` equal slices. The dataset derives each sample from its index and the
    epoch alone, so the union over ranks equals what a single process trains on.
    """

    def __init__(self, steps: int, global_batch: int, info: DistInfo):
        if global_batch % info.world_size:
            raise ConfigError(
                f"batch size {global_batch} must be divisible by the number of processes "
                f"({info.world_size})"
            )
        self.steps, self.global_batch, self.info = steps, global_batch, info
        self.local_batch = global_batch // info.world_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.steps):
            start = s * self.global_batch + self.info.rank * self.local_batch
            yield list(range(start, start + self.local_batch))

"""Process-group plumbing for runs under ``torchrun`` (gloo on CPU, NCCL on GPU): training with
DistributedDataParallel, and bulk transcription that splits a manifest between processes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asrforge.devices import resolve_device


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_preference: str = "auto", option: str = "train.device") -> DistInfo:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; join the process group when there is more than one process.
    ``option`` names the setting ``device_preference`` came from, in errors."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_preference, local_rank, option=option)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, device)


def broadcast_value(value: float, info: DistInfo) -> float:
    """Rank 0's ``value`` on every rank (stop decisions, schedule changes must agree everywhere)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return float(t.item())


def sum_values(values: list[float], info: DistInfo) -> list[float]:
    """Each of ``values`` summed over the ranks (every rank must call it, with as many values)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(value, info: DistInfo) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` when not distributed."""
    if not info.enabled:
        return [value]
    gathered = [None] * info.world
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()

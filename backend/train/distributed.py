"""The same training loop on one CPU process or under `torchrun` (DDP over gloo or nccl)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world == 1:
        return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    return Dist(rank=rank, world=world, device=torch.device(f"cuda:{local}" if use_cuda else "cpu"))


def shutdown(d: Dist) -> None:
    if d.world > 1:
        dist.destroy_process_group()

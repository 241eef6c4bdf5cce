"""PyTorch's own distributed runtime, as the trainer uses it.

Launch with ``torchrun --nproc_per_node N -m streamavs.cli train ...`` (or the `streamavs`
script): torchrun sets RANK / WORLD_SIZE / LOCAL_RANK and this module joins the process
group (NCCL on CUDA, gloo on CPU). A plain ``streamavs train`` is a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from streamavs.errors import InputError
from streamavs.training.config import check_device


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def all_mean(self, value: float) -> float:
        """Mean of a Python float over all processes."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)  # NCCL reduces CUDA tensors only
        dist.all_reduce(t)
        return float(t.item()) / self.size

    def from_main(self, flag: bool) -> bool:
        """Rank 0's `flag` on every process, so that all take the same branch: a refusal decided
        by rank 0 alone would leave the other ranks to die in their next collective."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())


def init_world(device: str = "auto") -> World:
    """Join the process group when launched by torchrun; pick the device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank, device=dev)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device of `device` ("auto": CUDA when PyTorch sees a GPU, else the CPU; "cuda": the
    GPU of this process, cuda:LOCAL_RANK). InputError for another name or a GPU that is not there."""
    if check_device(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise InputError(f"--device {device}: PyTorch sees no CUDA GPU here (no NVIDIA driver, or a CPU-only "
                         "torch build); train on the CPU with --device cpu, or --device auto")
    count = torch.cuda.device_count()
    if dev.index >= count:
        raise InputError(f"--device {device}: this process would use cuda:{dev.index}, but PyTorch sees {count} "
                         f"GPU(s), cuda:0 to cuda:{count - 1}; pick one of them, or run fewer processes")
    return dev


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()

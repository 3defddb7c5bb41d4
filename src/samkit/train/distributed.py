"""Data-parallel training under `torchrun`: process group set-up and the few collectives the
loop needs. Gradients are averaged in `step.py` with one all-reduce per step, which is what
DistributedDataParallel does; the wrapper itself is not used because a training step runs the
decoder many times per encoder pass, with a backward pass per prompt round.

The backend follows the device the run trains on: nccl with one GPU per process
(cuda:LOCAL_RANK) when it is CUDA, gloo on the CPU. Without torchrun's environment (WORLD_SIZE
unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def setup(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device), joining the process group torchrun
    describes if not joined yet: on CUDA, nccl with this process on cuda:LOCAL_RANK (made the
    current device); on any other device, gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"data-parallel training runs on cuda (nccl) or cpu (gloo), not {device}")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.index is not None and device.index != local:
            raise ValueError(
                f"under torchrun each process trains on cuda:LOCAL_RANK (here cuda:{local}); "
                f"pass --device cuda, not {device}"
            )
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"torchrun started a process with LOCAL_RANK {local} but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist; use --nproc_per_node "
                f"{torch.cuda.device_count()} or fewer"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def broadcast_model(model: nn.Module) -> None:
    """Make every process start from rank 0's weights."""
    if dist.is_initialized():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def any_flag(flag: bool) -> bool:
    """True on every process when `flag` is true on any (so all stop or save together)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _collective_device() -> torch.device:
    """Where the tensors of a collective must be: this process's GPU under nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def teardown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()

"""Data-parallel training under `torchrun`: process group set-up and the few collectives the
loop needs. Gradients are averaged in `step.py` with one all-reduce per step, which is what
DistributedDataParallel does; the wrapper itself is not used because a training step runs the
decoder many times per encoder pass, with a backward pass per prompt round.

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def setup() -> tuple[int, int]:
    """(rank, world size), joining the process group torchrun describes if not joined yet
    (gloo on CPU, nccl when CUDA is available)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def broadcast_model(model: nn.Module) -> None:
    """Make every process start from rank 0's weights."""
    if dist.is_initialized():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def any_flag(flag: bool) -> bool:
    """True on every process when `flag` is true on any (so all stop or save together)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def teardown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()

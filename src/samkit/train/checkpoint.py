"""Training checkpoints: weights as safetensors, everything else in a weights_only file.

A checkpoint is a folder `step_0001234/` holding `model.safetensors` and `state.pt` (optimizer,
scheduler, step, torch RNG state, config; only tensors and plain containers, so it loads with
`torch.load(weights_only=True)`). The folder is written under a temporary name and renamed,
then `latest.json` is replaced atomically to point at it: a run killed at any moment leaves
a complete checkpoint behind.

Checkpoints do not depend on the device that wrote them: everything is read onto the CPU
(`map_location="cpu"`) and then copied to wherever the model already is, so a run trained on a
GPU resumes on a CPU and back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .._atomic import atomic_path
from ..checkpoints import load_weights, read_state_dict

LATEST = "latest.json"


@dataclass(frozen=True)
class TrainState:
    step: int  # number of optimizer steps taken
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: torch.Tensor
    config: dict[str, Any]


def save_checkpoint(folder: Path, model: nn.Module, state: TrainState, keep: int = 2) -> Path:
    """Write checkpoint `state.step` under `folder`, point `latest.json` at it, and delete all
    but the newest `keep` checkpoints. Returns the checkpoint's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{state.step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}."))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(
            {
                "step": state.step,
                "optimizer": state.optimizer,
                "scheduler": state.scheduler,
                "torch_rng": state.torch_rng,
                "config": json.dumps(state.config),
            },
            tmp / "state.pt",
        )
        for name in ("model.safetensors", "state.pt"):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with atomic_path(folder / LATEST) as path:
        path.write_text(json.dumps({"step": state.step, "path": final.name}) + "\n")
    old = sorted(p for p in folder.glob("step_*") if p.is_dir() and p != final)
    for stale in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The folder `latest.json` points at, or None when there is no checkpoint yet."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    return folder / json.loads(pointer.read_text())["path"]


def load_checkpoint(path: Path, model: nn.Module) -> TrainState:
    """Load weights into `model` (strictly, onto the device it is on) and return the rest of
    the training state, read onto the CPU: `torch.optim.Optimizer.load_state_dict` then moves
    each optimizer state tensor to its parameter's device (AdamW's step counts stay on the CPU,
    where AdamW keeps them), and the torch RNG state is the CPU generator's."""
    load_weights(model, read_state_dict(path / "model.safetensors"))
    raw = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    return TrainState(
        step=int(raw["step"]),
        optimizer=raw["optimizer"],
        scheduler=raw["scheduler"],
        torch_rng=raw["torch_rng"],
        config=json.loads(raw["config"]),
    )

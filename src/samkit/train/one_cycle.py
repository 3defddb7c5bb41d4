"""The text grounder's optimisation loop (`samkit.train.grounder`): AdamW under a one-cycle
schedule, resumable from a small weights-only checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..text.grounding import TextGrounder

if TYPE_CHECKING:
    from .grounder import GrounderConfig

CHECKPOINT_STEPS = 500


def optimise(
    grounder: TextGrounder,
    steps: int,
    step_loss: Callable[[np.random.Generator], torch.Tensor],
    checkpoint: Path,
    config: GrounderConfig,
    log: Callable[[dict[str, Any]], None],
) -> None:
    """`steps` AdamW steps on `step_loss` (given each step's own generator) under a one-cycle
    schedule, resumed from and saved to `checkpoint` every CHECKPOINT_STEPS."""
    grounder.train()
    opt = torch.optim.AdamW(grounder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps, pct_start=0.05
    )
    step = 0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True, map_location=grounder.scale.device)
        try:
            grounder.load_state_dict(saved["grounder"])
        except RuntimeError as err:
            raise ValueError(
                f"{checkpoint} holds a grounder of another design (an earlier samkit's?): "
                f"use another --out, or delete it to train again on the same proposals: {err}"
            ) from None
        opt.load_state_dict(saved["opt"])
        schedule.load_state_dict(saved["schedule"])
        step = int(saved["step"])
    start, losses = time.monotonic(), []
    while step < steps:
        loss = step_loss(np.random.default_rng([config.seed, step]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % CHECKPOINT_STEPS == 0 or step == steps:
            state = {
                "grounder": grounder.state_dict(),
                "opt": opt.state_dict(),
                "schedule": schedule.state_dict(),
                "step": step,
            }
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
            log(
                {
                    "phase": checkpoint.stem,
                    "step": step,
                    "loss": round(float(np.mean(losses[-CHECKPOINT_STEPS:])), 4),
                    "s": round(time.monotonic() - start),
                }
            )
    grounder.eval()

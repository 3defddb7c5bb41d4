"""Training hyperparameters: one dataclass, read from one JSON file.

The JSON file names every field; a "notes" object beside them gives the reason for each odd
value. Unknown or missing fields are errors, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .losses import FOCAL_ALPHA


@dataclass(frozen=True)
class TrainConfig:
    model: str  # name in sam_model_registry
    torch_threads: int
    seed: int  # model initialisation and per-step prompt sampling
    train_scene_seed: int  # training scenes: scene i of step i
    val_scene_seed: int  # held-out scenes, a different seed stream
    val_scenes: int
    val_clicks: int
    scene_size: int  # px, must equal the model's input size
    images_per_step: int  # images per optimizer step and process (gradients summed)
    masks_per_step: int  # prompts decoded per image, sharing one encoder pass
    min_rounds: int  # prompt rounds per step, drawn uniformly in [min_rounds, max_rounds]
    max_rounds: int
    mask_only_prob: float  # chance that a round after the first adds no point
    loss_size: int  # px side at which mask losses are computed (a divisor of scene_size)
    box_prob: float  # chance that a mask's first prompt is a noisy box instead of a point
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_steps: int
    total_steps: int
    lr_milestones: tuple[int, ...]  # steps where the learning rate is multiplied by lr_gamma
    lr_gamma: float
    grad_clip: float  # max global gradient norm; 0 disables clipping
    bf16: bool  # torch.autocast("cpu", bfloat16) for the forward passes
    freeze_image_encoder: bool  # decoder-only training
    log_every: int  # steps between log records
    checkpoint_minutes: float
    keep_checkpoints: int
    val_minutes: float
    init_from: str = ""  # weights file to start from (a later stage of a run); "" = fresh weights
    # with init_from: take only the tensors whose names start with one of these prefixes (the
    # rest keep their fresh values), e.g. to start a wider model on a trained encoder trunk
    init_only: tuple[str, ...] = ()
    focal_alpha: float = FOCAL_ALPHA  # focal loss's weight on object pixels (1 - it on background)
    # chance that a point prompt is the click protocol's (the most interior point of the mask,
    # or of the largest error region) rather than a uniform draw; 0 = the paper's uniform draws
    protocol_click_prob: float = 0.0
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"need 1 <= min_rounds <= max_rounds; got {self.min_rounds}, {self.max_rounds}"
            )
        if min(self.images_per_step, self.masks_per_step, self.total_steps) < 1:
            raise ValueError("images_per_step, masks_per_step and total_steps must be positive")
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing; got {self.lr_milestones}")
        if not (0 < self.focal_alpha < 1 or self.focal_alpha == -1):
            raise ValueError(
                f"focal_alpha must be in (0, 1), or -1 for none; got {self.focal_alpha}"
            )
        if not 0 <= self.protocol_click_prob <= 1:
            raise ValueError(
                f"protocol_click_prob is a chance in [0, 1]; got {self.protocol_click_prob}"
            )
        if self.init_only and not self.init_from:
            raise ValueError("init_only names tensors of init_from, which is not set")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if unknown or missing:
            raise ValueError(f"bad training config: unknown fields {unknown}, missing {missing}")
        values = dict(values)
        values["betas"] = tuple(values["betas"])
        values["lr_milestones"] = tuple(values["lr_milestones"])
        values["init_only"] = tuple(values.get("init_only", ()))
        return cls(**values)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The optional fields and their defaults, as JSON values."""
        return {
            f.name: json.loads(json.dumps(f.default))
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read training config {path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at `step`: linear warm-up, then step decay."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return float(self.lr_gamma ** sum(step >= m for m in self.lr_milestones))


def finetune_config(
    model: str,
    image_size: int,
    *,
    steps: int,
    lr: float,
    freeze_image_encoder: bool,
    threads: int,
    seed: int = 0,
) -> TrainConfig:
    """The recipe `samkit finetune` uses: the paper's prompting and losses at a fine-tuning
    learning rate, warm-up over the first 5% of steps, 10x decays at 2/3 and 9/10 of them."""
    return TrainConfig(
        model=model,
        torch_threads=threads,
        seed=seed,
        train_scene_seed=seed,
        val_scene_seed=seed + 1,
        val_scenes=0,  # evaluate afterwards with `samkit eval` on held-out data
        val_clicks=3,
        scene_size=image_size,
        images_per_step=1,
        masks_per_step=16,
        min_rounds=1,
        max_rounds=3,
        mask_only_prob=0.15,
        loss_size=min(image_size, 256),
        box_prob=0.5,
        lr=lr,
        weight_decay=0.05,
        betas=(0.9, 0.999),
        warmup_steps=max(1, steps // 20),
        total_steps=steps,
        lr_milestones=(max(1, 2 * steps // 3), max(1, 9 * steps // 10)),
        lr_gamma=0.1,
        grad_clip=1.0,
        bf16=False,
        freeze_image_encoder=freeze_image_encoder,
        log_every=max(1, min(25, steps // 20)),
        checkpoint_minutes=5,
        keep_checkpoints=2,
        val_minutes=1e9,
    )

"""Training hyperparameters: what a run learns (`TrainConfig`, the recipe, read from JSON) and
how it is operated (`RunOptions`: threads, checkpoint and validation intervals, logging),
which the command line chooses and a resumed run may change.

A JSON config names only the fields it changes from the defaults below (the bundled model's
recipe; the reason for each odd value is beside it). An unknown field is an error, so a typo
cannot silently fall back to a default. A pipeline of several configs is `pipeline.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..build import variant_registry
from ..devices import PRECISIONS
from .losses import FOCAL_ALPHA

# Fields that configs (and the checkpoints of older runs) held until they became run options:
# config field -> RunOptions field.
MOVED_TO_RUN_OPTIONS = {
    "torch_threads": "threads",
    "log_every": "log_every",
    "checkpoint_minutes": "checkpoint_minutes",
    "val_minutes": "val_minutes",
    "keep_checkpoints": "keep_checkpoints",
}


@dataclass(frozen=True)
class TrainConfig:
    """The recipe of a training run; every field changes the steps it takes, so a run resumes
    only under the config it started with (see `trainer.OPERATIONAL` for the exceptions)."""

    model: str = "samkit_default"  # name in build.variant_registry
    seed: int = 0  # model initialisation and per-step prompt sampling
    train_scene_seed: int = 1  # training scenes: scene i of step i (one fresh scene a step)
    val_scene_seed: int = 2  # held-out scenes, another seed stream (the final eval takes 3)
    val_scenes: int = 32  # ~600 masks, a few hundred of each kind; 0: no validation
    val_clicks: int = 3
    scene_size: int = 128  # px, must equal the model's input size (samkit_default's)
    images_per_step: int = 1  # images per optimizer step and process (gradients summed)
    # prompts decoded per image, sharing one encoder pass (scenes hold 8-25 masks); the
    # decoder runs once per mask and round, so this sets the step cost
    masks_per_step: int = 16
    # prompt rounds per step, drawn uniformly in [min_rounds, max_rounds]: 1 click and 1
    # correction always; the paper trains 11, 4 covers the 1-3 clicks we are judged on
    min_rounds: int = 2
    max_rounds: int = 4
    mask_only_prob: float = 0.15  # chance a round after the first adds no point (paper ~2/11)
    loss_size: int = 128  # px side at which mask losses are computed (a divisor of scene_size)
    box_prob: float = 0.5  # chance a mask's first prompt is a noisy box, not a point (paper)
    # SAM used 8e-4 at 256 images a batch; one image a step is a much noisier gradient
    lr: float = 4e-4
    weight_decay: float = 0.05  # SAM: 0.1 with limited data; fresh scenes each step need less
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 250  # linear warm-up, as SAM
    total_steps: int = 7500
    lr_milestones: tuple[int, ...] = (5600, 6900)  # x lr_gamma at ~75% and ~92% (SAM: 67, 96)
    lr_gamma: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm (one-image batches); 0 disables clipping
    # autocast of the forward passes: "fp32", "bf16", or "auto", which a run turns into bf16
    # where bf16 matmuls are native (CUDA, AVX-512 BF16 / AMX CPUs; bf16 was ~8x slower than
    # fp32 on an AVX2 CPU) and fp32 elsewhere, and records; resumed, "auto" keeps the record
    precision: str = "auto"
    freeze_image_encoder: bool = False  # decoder-only training
    init_from: str = ""  # weights file to start from (a later stage of a run); "" = fresh weights
    # with init_from: take only the tensors whose names start with one of these prefixes (the
    # rest keep their fresh values), e.g. to start a wider model on a trained encoder trunk
    init_only: tuple[str, ...] = ()
    # The last two keep what runs did before they existed: a checkpoint written then resumes
    # with them. focal loss's weight on object pixels (1 - it on background):
    focal_alpha: float = FOCAL_ALPHA
    # chance that a point prompt is the click protocol's (the most interior point of the mask,
    # or of the largest error region) rather than a uniform draw; 0 = the paper's uniform draws
    protocol_click_prob: float = 0.0
    # Text prompts (`samkit.text`): the encoder whose vectors the model's text projection
    # reads ("" = no text; "minilm" or "clip:..."), the chance a target that a phrase names
    # unambiguously gets it as a prompt, and the chance such a text prompt has no first point
    text_encoder: str = ""
    text_prob: float = 0.0
    text_only_prob: float = 0.5
    text_lr: float = 0.0  # peak learning rate of the text head (0: `lr`, as the rest)
    # the SAM paper's text training: a target's prompt is the CLIP image embedding of its crop
    # (a "clip:" encoder), so every mask trains the head and no words are needed; at inference
    # the CLIP text embedding of a phrase takes its place (one embedding space)
    text_from_crops: bool = False
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> why its value

    def __post_init__(self) -> None:
        if self.model not in variant_registry:
            raise ValueError(
                f"model must be one of {', '.join(variant_registry)}; got {self.model!r}"
            )
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"need 1 <= min_rounds <= max_rounds; got {self.min_rounds}, {self.max_rounds}"
            )
        if min(self.images_per_step, self.masks_per_step, self.total_steps) < 1:
            raise ValueError("images_per_step, masks_per_step and total_steps must be positive")
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing; got {self.lr_milestones}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if not (0 < self.focal_alpha < 1 or self.focal_alpha == -1):
            raise ValueError(
                f"focal_alpha must be in (0, 1), or -1 for none; got {self.focal_alpha}"
            )
        if not 0 <= self.protocol_click_prob <= 1:
            raise ValueError(
                f"protocol_click_prob is a chance in [0, 1]; got {self.protocol_click_prob}"
            )
        if not (0 <= self.text_prob <= 1 and 0 <= self.text_only_prob <= 1):
            raise ValueError(
                f"text_prob and text_only_prob are chances in [0, 1]; got {self.text_prob}, "
                f"{self.text_only_prob}"
            )
        if self.text_lr < 0:
            raise ValueError(f"text_lr must be >= 0 (0: lr); got {self.text_lr}")
        if self.text_prob > 0 and not self.text_encoder:
            raise ValueError('text_prob > 0 needs a text_encoder (e.g. "minilm")')
        if self.text_from_crops and not self.text_encoder.startswith("clip:"):
            raise ValueError(
                "text_from_crops embeds object crops with CLIP's image tower: it needs a "
                f'"clip:<model>[:<weights>]" text_encoder; got {self.text_encoder!r}'
            )
        if self.init_only and not self.init_from:
            raise ValueError("init_only names tensors of init_from, which is not set")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of JSON `values`; fields left out take their defaults. The older
        `bf16: true/false` is read as precision "bf16"/"fp32"; an unknown field, or one that
        is a run option now, is a ValueError that says so."""
        values = dict(values)
        if "bf16" in values:
            if "precision" in values:
                raise ValueError("bad training config: give precision or the older bf16, not both")
            values["precision"] = "bf16" if values.pop("bf16") else "fp32"
        moved = [k for k in MOVED_TO_RUN_OPTIONS if k in values]
        if moved:
            flags = ", ".join(f"--{MOVED_TO_RUN_OPTIONS[k].replace('_', '-')}" for k in moved)
            raise ValueError(
                f"bad training config: {', '.join(moved)} are run options now, not part of the "
                f"recipe; remove them and pass {flags} to `python -m samkit.train` instead"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"bad training config: unknown fields {unknown}; the fields are {', '.join(names)}"
            )
        for name in ("betas", "lr_milestones", "init_only"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_saved(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config a run of any samkit version stored (in its checkpoints and config.json):
        the run options it may hold are dropped, `bf16` is read as precision, and fields added
        since take their defaults, which is what the run trained with."""
        return cls.from_dict({k: v for k, v in values.items() if k not in MOVED_TO_RUN_OPTIONS})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read training config {path}: {e}") from e
        if isinstance(values, dict) and "stages" in values:
            raise ValueError(f"{path} is a pipeline of stages: pass it with --pipeline")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at `step`: linear warm-up, then step decay."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return float(self.lr_gamma ** sum(step >= m for m in self.lr_milestones))


@dataclass(frozen=True)
class RunOptions:
    """How a run is operated, not what it learns: the command-line options of
    `python -m samkit.train`, free to change when a run resumes."""

    threads: int | None = None  # torch CPU threads; None keeps torch's choice (one per core)
    log_every: int = 25  # steps a log record averages (one scene each: smooths their noise)
    checkpoint_minutes: float = 5.0  # a killed run loses at most this much work
    val_minutes: float = 30.0  # validation takes a minute or two on a CPU: ~5% of the time
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be positive; got {self.threads}")
        if min(self.log_every, self.keep_checkpoints) < 1:
            raise ValueError("log_every and keep_checkpoints must be positive")
        if min(self.checkpoint_minutes, self.val_minutes) <= 0:
            raise ValueError("checkpoint_minutes and val_minutes must be positive")


def finetune_config(
    model: str,
    image_size: int,
    *,
    steps: int,
    lr: float,
    freeze_image_encoder: bool,
    seed: int = 0,
    precision: str = "fp32",
    text_encoder: str = "",
    text_prob: float = 0.0,
    text_from_crops: bool = False,
) -> TrainConfig:
    """The recipe `samkit finetune` uses: the paper's prompting and losses at a fine-tuning
    learning rate, warm-up over the first 5% of steps, 10x decays at 2/3 and 9/10 of them.
    With a `text_encoder`, a target its category names alone gets that phrase as a prompt
    with chance `text_prob` (`train/text.py`); with `text_from_crops`, any target does, by
    the CLIP image embedding of its crop."""
    return TrainConfig(
        model=model,
        seed=seed,
        train_scene_seed=seed,
        val_scene_seed=seed + 1,
        val_scenes=0,  # evaluate afterwards with `samkit eval` on held-out data
        scene_size=image_size,
        min_rounds=1,
        max_rounds=3,
        loss_size=min(image_size, 256),
        lr=lr,
        warmup_steps=max(1, steps // 20),
        total_steps=steps,
        lr_milestones=(max(1, 2 * steps // 3), max(1, 9 * steps // 10)),
        precision=precision,
        freeze_image_encoder=freeze_image_encoder,
        text_encoder=text_encoder,
        text_prob=text_prob,
        text_from_crops=text_from_crops,
    )


def finetune_options(steps: int, threads: int | None) -> RunOptions:
    """The run options of `samkit finetune`: about 20 log records a run, 2 checkpoints kept."""
    return RunOptions(threads=threads, log_every=max(1, min(25, steps // 20)), keep_checkpoints=2)

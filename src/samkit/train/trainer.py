"""The training loop: steps, learning-rate schedule, checkpoints, validation and the log.

Step i trains on global images i * B ... i * B + B - 1 (B = images_per_step times the number
of processes), and everything random about an image comes from (config.seed, its number), so
a run that is killed and resumed from a checkpoint takes exactly the steps it would have
taken. Under `torchrun` every process takes its share of each step's images and the
gradients are averaged (see `distributed.py`); only rank 0 writes logs and checkpoints.

The model trains on the device the caller names (`train(..., device=)`, the CLIs' --device);
checkpoints are device-free, so a run started on a GPU resumes on a CPU and back.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from .. import devices
from .._atomic import atomic_path
from ..build import variant_registry
from ..checkpoints import CheckpointError, load_weights, read_state_dict
from ..data import SyntheticScenes
from ..eval.clicks import click_ious
from ..interrupt import Interrupted, stop_on_signal
from ..loading import TEXT_ENCODER_KEY, TEXT_HEAD_PREFIX, VARIANT_KEY
from ..modeling import Sam
from ..text import get_text_encoder
from . import distributed
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import RunOptions, TrainConfig
from .sources import SyntheticSource, TrainSource
from .step import StepStats, train_step

# Fields that may change between a run and its resumption without changing the steps taken
# (total_steps only says where to stop: the schedule's milestones are absolute steps;
# precision only sets the forward passes' autocast, the weights and optimizer state are fp32
# in every precision, so a GPU run in bf16 goes on on a CPU in fp32 and back).
# How a run is operated (threads, intervals) is not in the config at all: see RunOptions.
OPERATIONAL = {"val_scenes", "total_steps", "precision", "notes"}
SCHEDULE = {"warmup_steps", "lr_milestones", "lr_gamma"}  # may change where the past allows


def build_optimizer(model: Sam, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and convolution kernels only (not on norms,
    biases, embeddings or positional tables); with `config.text_lr`, the text head is a group
    of its own at that learning rate."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    text: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if config.text_lr > 0 and name.startswith(TEXT_HEAD_PREFIX):
            text.append(p)
            continue
        is_kernel = p.ndim >= 2 and id(p) not in embeddings and "pos" not in name
        (decay if is_kernel else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if text:
        groups.append({"params": text, "weight_decay": config.weight_decay, "lr": config.text_lr})
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def new_model(config: TrainConfig, init_weights: dict[str, torch.Tensor] | None = None) -> Sam:
    """The model to train: `init_weights` (fine-tuning), or fresh weights that depend only on
    `config.seed`."""
    torch.manual_seed(config.seed)
    model = variant_registry[config.model]()
    init_weights = _with_text_head(model, init_weights, config)
    if init_weights is not None and config.init_only:
        init_weights = _with_fresh_rest(model, init_weights, config.init_only)
    if init_weights is not None:
        load_weights(model, init_weights, variant=config.model)
    if config.freeze_image_encoder:
        model.image_encoder.requires_grad_(False)
    return model.train()


def _with_text_head(
    model: Sam, init_weights: dict[str, torch.Tensor] | None, config: TrainConfig
) -> dict[str, torch.Tensor] | None:
    """Give `model` a text head when the run trains text prompts or `init_weights` has one;
    returns `init_weights` with a fresh head's tensors added where they have none."""
    head = None if init_weights is None else init_weights.get(TEXT_HEAD_PREFIX + "layers.0.weight")
    if not config.text_encoder and head is None:
        return init_weights
    dim = get_text_encoder(config.text_encoder).dim if config.text_encoder else None
    if head is not None and dim is not None and head.shape[1] != dim:
        raise ValueError(
            f"the init weights' text head reads {head.shape[1]}-d vectors but text encoder "
            f"{config.text_encoder!r} gives {dim}-d ones"
        )
    model.prompt_encoder.enable_text(dim if dim is not None else int(head.shape[1]))  # type: ignore[union-attr]
    model.text_encoder = config.text_encoder or None
    if init_weights is None or head is not None:
        return init_weights
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith(TEXT_HEAD_PREFIX)}
    return {**init_weights, **fresh}


def _with_fresh_rest(
    model: Sam, weights: dict[str, torch.Tensor], prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """`model`'s own state dict with the tensors named by `prefixes` taken from `weights`.
    Every prefix must name at least one tensor of `weights`; shapes are checked on loading."""
    unused = [p for p in prefixes if not any(k.startswith(p) for k in weights)]
    if unused:
        raise CheckpointError(f"init_only prefixes {unused} name no tensor of the init weights")
    taken = {k: v for k, v in weights.items() if k.startswith(prefixes)}
    return {**model.state_dict(), **taken}


@torch.no_grad()
def validate(model: Sam, config: TrainConfig) -> dict[str, float]:
    """mIoU after 1..val_clicks protocol clicks over every mask of the held-out scenes, overall
    and per kind of mask (object / part / group)."""
    if config.val_scenes == 0:
        return {}
    model.eval()
    rows, kinds = [], []
    for scene in SyntheticScenes(
        seed=config.val_scene_seed, n=config.val_scenes, size=config.scene_size
    ):
        rows.append(click_ious(model, scene.image, scene.masks, config.val_clicks))
        kinds += [o.kind for o in scene.objects]
    model.train()
    ious = np.concatenate(rows)  # (N, clicks)
    kind = np.array(kinds)
    out = {f"miou@{k + 1}": float(ious[:, k].mean()) for k in range(ious.shape[1])}
    for name in ("object", "part", "group"):
        if (kind == name).any():
            for k in (0, ious.shape[1] - 1):
                out[f"{name}_miou@{k + 1}"] = float(ious[kind == name, k].mean())
    out["masks"] = len(kind)
    return out


class _Log:
    """Append-only JSONL log; on resume, records after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        elif path.exists():
            path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def train(
    config: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    source: TrainSource | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    options: RunOptions | None = None,
) -> Sam:
    """Train (or continue training) into folder `out`; stop after `max_steps` steps in this
    call if given, else at `config.total_steps`. Images come from `source` (default: the
    synthetic stream `config.train_scene_seed`); `init_weights` (or the file `config.init_from`)
    start a fine-tuning run or a later stage of one. The model trains on `device` ("cpu",
    "cuda", "cuda:N", "mps"; under torchrun with CUDA each process takes cuda:LOCAL_RANK) in
    `config.precision`; both are checked before any work starts. `options` say how the run is
    operated (threads, checkpoint and validation intervals, logging; default `RunOptions()`).
    Returns the model, on `device`. SIGINT or SIGTERM stops the run after the step in progress
    and a checkpoint: it raises `samkit.interrupt.Interrupted`, and `resume=True` goes on."""
    options = options or RunOptions()
    device = devices.resolve_device(device)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    rank, world, device = distributed.setup(device)
    source = source or SyntheticSource(config.train_scene_seed, config.scene_size)
    ckpt_dir = out / "checkpoints"
    if init_weights is None and config.init_from:
        init_weights = read_state_dict(config.init_from)
    model = new_model(config, init_weights).to(device)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    step = 0
    found = latest_checkpoint(ckpt_dir)
    if found is not None and not resume:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume or another --out")
    if resume and found is not None:
        step, config = _restore(found, model, optimizer, scheduler, config)
        if rank == 0:
            print(f"resumed from {found} at step {step}", flush=True)
    # "auto" becomes the precision this run trains in, recorded in its config and checkpoints
    precision = devices.resolve_precision(config.precision, device)
    config = dataclasses.replace(config, precision=precision)
    distributed.broadcast_model(model)
    lead = rank == 0
    if lead:
        print(f"training on {device} in {precision} ({world} process(es))", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    log = _Log(out / "log.jsonl", step if resume else None) if lead else None
    last_step = (
        config.total_steps if max_steps is None else min(config.total_steps, step + max_steps)
    )
    per_rank = config.images_per_step

    def checkpoint() -> None:
        if not lead:
            return
        state = TrainState(
            step, optimizer.state_dict(), scheduler.state_dict(), torch.get_rng_state(),
            config.to_dict(),
        )  # fmt: skip
        save_checkpoint(ckpt_dir, model, state, keep=options.keep_checkpoints)

    last_ckpt = last_val = time.monotonic()
    window: list[tuple[StepStats, float]] = []
    bar = tqdm(total=config.total_steps, initial=step, disable=not (lead and sys.stderr.isatty()))
    # SIGINT or SIGTERM: finish the step, save a checkpoint, raise Interrupted (a second
    # signal raises at once)
    with stop_on_signal("this step, saving a checkpoint") as stop:
        while step < last_step and not distributed.any_flag(bool(stop)):
            started = time.monotonic()
            first = (step * world + rank) * per_rank
            indices = list(range(first, first + per_rank))
            scenes = [source(i) for i in indices]
            stats = train_step(model, optimizer, scenes, indices, config, world)
            scheduler.step()
            step += 1
            bar.update(1)
            window.append((stats, time.monotonic() - started))
            if log is not None and (step % options.log_every == 0 or step == last_step):
                record = _summary(window, step, float(scheduler.get_last_lr()[0]))
                log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", iou1=f"{record['first_iou']:.2f}")
                print(json.dumps(record), flush=True)
                window = []
            now = time.monotonic()
            if distributed.any_flag(now - last_ckpt >= 60 * options.checkpoint_minutes):
                checkpoint()
                last_ckpt = now
            if log is not None and now - last_val >= 60 * options.val_minutes:
                _validate_and_log(model, config, step, log)
                last_val = time.monotonic()
    bar.close()
    checkpoint()
    if step < last_step:  # stopped by a signal, here or (under torchrun) in another process
        signum = stop.signum or signal.SIGTERM
        saved = f"; checkpoint saved in {ckpt_dir}" if lead else ""
        raise Interrupted(signum, f"stopped at step {step} of {config.total_steps}{saved}")
    if log is not None and step >= config.total_steps:
        _validate_and_log(model, config, step, log)
        with atomic_path(out / "model.safetensors") as path:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                str(path),
                metadata=model_metadata(model, config.model),
            )
    return model


def model_metadata(model: Sam, variant: str) -> dict[str, str]:
    """The safetensors metadata of a trained model: its variant, and its text encoder."""
    meta = {VARIANT_KEY: variant}
    if model.text_encoder:
        meta[TEXT_ENCODER_KEY] = model.text_encoder
    return meta


def _same_past_schedule(config: TrainConfig, saved: dict[str, Any], step: int) -> bool:
    """Whether the learning rate of every step before `step` is the same under `config` as
    under the checkpoint's `saved` config: then a schedule may be moved or shortened on
    resume (e.g. its decay brought forward) and the run stays the one the new config makes."""
    old = {k: saved[k] for k in SCHEDULE if k in saved}
    before = TrainConfig.from_dict({**config.to_dict(), **old})
    return all(config.lr_factor(s) == before.lr_factor(s) for s in range(step))


def _restore(
    found: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
) -> tuple[int, TrainConfig]:
    """Load checkpoint `found` into the training objects; returns its step and the config to
    go on with."""
    state = load_checkpoint(found, model)
    saved = json.loads(json.dumps(TrainConfig.from_saved(state.config).to_dict()))
    changed = {
        k
        for k, v in config.to_dict().items()
        if k not in OPERATIONAL and json.loads(json.dumps(v)) != saved.get(k)
    }
    if changed and changed <= SCHEDULE and _same_past_schedule(config, state.config, state.step):
        changed = set()
    if changed:
        raise ValueError(f"config differs from the checkpoint's in {sorted(changed)}")
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(state.torch_rng)
    return state.step, config


def _validate_and_log(model: Sam, config: TrainConfig, step: int, log: _Log) -> None:
    if config.val_scenes == 0:
        return
    started = time.monotonic()
    record = {"type": "val", "step": step, **validate(model, config)}
    record["seconds"] = round(time.monotonic() - started, 1)
    log.write(record)
    print(json.dumps(record), flush=True)


def _summary(window: list[tuple[StepStats, float]], step: int, lr: float) -> dict[str, Any]:
    def mean(name: str) -> float:
        return float(np.mean([getattr(s, name) for s, _ in window]))

    return {
        "type": "train",
        "step": step,
        "loss": mean("loss"),
        "mask_loss": mean("mask_loss"),
        "iou_loss": mean("iou_loss"),
        "first_iou": mean("first_iou"),
        "last_iou": mean("last_iou"),
        "lr": lr,
        "sec_per_step": float(np.mean([t for _, t in window])),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }

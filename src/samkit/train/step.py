"""One training step: encode each of the step's images once, then simulate interactive
prompting of many of its masks at the same time, with a loss at every round.

Per image, each of up to `masks_per_step` masks gets a first prompt (a positive point or a
noisy box), then corrective points from the error region of the previous prediction, whose
low-res logits (of the mask with the highest predicted IoU) are fed back as a mask prompt.
The number of rounds is drawn in [min_rounds, max_rounds] (the paper uses 11, too slow on a
CPU); a round after the first adds no point with probability `mask_only_prob` (the paper's
mask-only rounds). Mask losses are computed at `loss_size` pixels (logits resized up,
targets averaged down to soft targets), which costs far less than the full image size; the
IoU head's target is the IoU of the full-size mask.

Each round is backpropagated as soon as its loss is known, into a detached copy of the image
embedding whose gradient is passed through the encoder once at the end: the same gradient
as one big sum, with only one round's activations in memory.

Everything runs on the model's device, under autocast in `config.precision` ("auto": bf16 on
CUDA and on CPUs with native bf16, else fp32; see `samkit.devices`). Random draws come from a
CPU generator and are moved to the device, so a seed draws the same numbers on every device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import devices
from ..data import Scene
from ..modeling import Sam
from .config import TrainConfig
from .losses import iou_loss, mask_iou, mask_loss
from .prompts import noisy_boxes, protocol_points, sample_error_points, sample_points_in
from .sources import FittedSample
from .text import ALONE, WITH_POINT, TextPrompts, choose_text

# Kinds of first prompt, in the order simulate_rounds sorts its rows by.
POINT, POINT_TEXT, TEXT, BOX = 0, 1, 2, 3


@dataclass(frozen=True)
class StepStats:
    loss: float  # mask loss + IoU loss, averaged over rounds and masks
    mask_loss: float
    iou_loss: float
    first_iou: float  # mean IoU of the chosen mask after the first prompt
    last_iou: float  # ... after the last round
    rounds: int
    masks: int


def step_generator(seed: int, index: int) -> torch.Generator:
    """The random stream of one training image: a pure function of (seed, image number), so
    resuming is exact and the images of a step are the same however many processes share it."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def scene_batch(
    scene: Scene | FittedSample, k: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scene image as (1, 3, h, w) float 0-255 and up to k of its masks, (B, S, S) bool,
    both on `device`, and the masks' indices in the scene, (B,)."""
    image = torch.from_numpy(scene.image).to(device).permute(2, 0, 1)[None].float()
    masks = torch.from_numpy(scene.masks)
    if masks.shape[0] == 0:
        raise ValueError("scene has no objects to train on")
    pick = torch.randperm(masks.shape[0], generator=generator)[:k]
    return image, masks[pick].to(device), pick


@functools.cache
def resize_matrix(n_in: int, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """(n_out, n_in) matrix M with M @ x equal to bilinear resizing of x along its first axis
    (align_corners=False, as F.interpolate and Sam.postprocess_masks). Upsampling a mask as
    M_h @ x @ M_w.T is a pair of matmuls, far faster to backpropagate on a CPU than
    F.interpolate."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, i0] += 1 - frac
    m[rows, i1] += frac
    return m.float().to(device)  # on `device` (None: the CPU), made once per device


def train_step(
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scenes: Sequence[Scene | FittedSample],
    indices: Sequence[int],
    config: TrainConfig,
    world_size: int = 1,
) -> StepStats:
    """Accumulate gradients for `scenes` (global image numbers `indices`, which seed each
    image's prompts) and take one optimizer step (the caller steps the learning-rate
    scheduler). Under torch.distributed each of `world_size` processes passes its own scenes
    and the gradients are averaged over all of them before clipping and the step."""
    optimizer.zero_grad(set_to_none=True)
    weight = 1.0 / (len(scenes) * world_size)  # every image of the global batch counts alike
    stats = [_accumulate(model, scene, index, config, weight) for scene, index in zip(
        scenes, indices, strict=True)]  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    if world_size > 1:
        _all_reduce_grads(params)
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], config.grad_clip)
    optimizer.step()
    return StepStats(
        **{f: float(np.mean([getattr(s, f) for s in stats])) for f in _MEAN_FIELDS},
        rounds=max(s.rounds for s in stats),
        masks=sum(s.masks for s in stats),
    )


_MEAN_FIELDS = ("loss", "mask_loss", "iou_loss", "first_iou", "last_iou")


def _accumulate(
    model: Sam, scene: Scene | FittedSample, index: int, config: TrainConfig, weight: float
) -> StepStats:
    """Add `weight` times the gradient of one image's loss to the parameters' gradients."""
    gen = step_generator(config.seed, index)
    image, targets, picked = scene_batch(scene, config.masks_per_step, gen, model.device)
    text = choose_text(scene, picked.tolist(), gen, config) if config.text_encoder else None
    size = model.img_size
    if max(image.shape[-2:]) != size or targets.shape[-2:] != (size, size):
        raise ValueError(
            f"scene is {tuple(image.shape[-2:])} px but the model takes {size} px "
            "squares; set scene_size to the model's input size"
        )
    train_encoder = not config.freeze_image_encoder
    with devices.autocast(model.device, config.precision), torch.set_grad_enabled(train_encoder):
        embedding = model.image_encoder(model.preprocess(image[0])[None])  # (1, C, h, w)
    leaf = embedding.detach().float().requires_grad_(train_encoder)
    stats = simulate_rounds(
        model, leaf, targets, gen, config, backward=True, weight=weight, text=text
    )
    if train_encoder and leaf.grad is not None:
        embedding.backward(leaf.grad.to(embedding.dtype))
    return stats


def _decode(
    model: Sam, embedding: torch.Tensor, prompts: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every prompt's masks, (B, 4, 4h, 4w) and (B, 4) in the order of `prompts`,
    one decoder call per run of prompts with the same number of sparse tokens (a point
    prompt and a box prompt both have 2 more than their corrective points, so without text
    one call does all)."""
    lows, ious = [], []
    i = 0
    while i < len(prompts):
        j = i + 1
        while j < len(prompts) and prompts[j][0].shape[1] == prompts[i][0].shape[1]:
            j += 1
        low, iou = model.mask_decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat([p[0] for p in prompts[i:j]]),
            dense_prompt_embeddings=torch.cat([p[1] for p in prompts[i:j]]),
        )
        lows.append(low)
        ious.append(iou)
        i = j
    return torch.cat(lows), torch.cat(ious)


def _all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum every gradient over the processes (each already weighted by 1 / global batch),
    as one flat buffer: one collective per step."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _with_protocol_clicks(
    coords: torch.Tensor,
    labels: torch.Tensor,
    pred: torch.Tensor | None,
    targets: torch.Tensor,
    generator: torch.Generator,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each drawn point (B, 2) and label (B,) by the click protocol's point for
    `pred` (None: a first click) with chance `config.protocol_click_prob`. With a chance of 0
    nothing is drawn, so the random stream of a run without protocol clicks is unchanged."""
    if config.protocol_click_prob == 0 or coords.shape[0] == 0:
        return coords, labels
    use = torch.rand(coords.shape[0], generator=generator) < config.protocol_click_prob
    use = use.to(coords.device) & targets.flatten(1).any(1)
    if not use.any():
        return coords, labels
    coords, labels = coords.clone(), labels.clone()
    new, new_labels = protocol_points(None if pred is None else pred[use], targets[use])
    coords[use] = new
    labels[use] = new_labels.to(labels.dtype)
    return coords, labels


def simulate_rounds(
    model: Sam,
    embedding: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    config: TrainConfig,
    backward: bool,
    weight: float = 1.0,
    text: TextPrompts | None = None,
) -> StepStats:
    """Simulated interactive prompting of (B, H, W) bool `targets` on one image whose
    (1, C, h, w) `embedding` is given. With `backward`, each round's loss (times `weight`,
    divided by the number of rounds) is backpropagated before the next round starts.
    `text` gives some targets a text token in every round, either with the first point or
    instead of it (see `TextPrompts`); the others start from a point or a box as before."""
    pe = model.prompt_encoder
    device = embedding.device
    b, size = targets.shape[0], targets.shape[-1]
    n_rounds = int(
        torch.randint(config.min_rounds, config.max_rounds + 1, (1,), generator=generator)
    )
    use_box = torch.rand(b, generator=generator) < config.box_prob
    # rows in the order of their first prompt: point, point + text, text alone, box
    start = torch.where(use_box, BOX, POINT)
    vectors = None
    if text is not None:
        start = torch.where(text.mode == WITH_POINT, POINT_TEXT, start)
        start = torch.where(text.mode == ALONE, TEXT, start)
    order = torch.argsort(start, stable=True)
    start = start[order]
    if text is not None:
        vectors = text.vectors[order].to(device)
    order = order.to(device)
    targets = targets[order]
    counts = [int((start == k).sum()) for k in (POINT, POINT_TEXT, TEXT, BOX)]
    ends = np.cumsum(counts).tolist()
    n_pt = ends[1]  # rows with a first point
    tfloat = targets.float()[:, None]  # (B, 1, H, W)
    loss_size = config.loss_size
    if size % loss_size:
        raise ValueError(f"loss_size {loss_size} must divide the scene size {size}")
    soft = F.avg_pool2d(tfloat, size // loss_size)  # (B, 1, L, L) fraction of object per cell
    boxes = noisy_boxes(targets[ends[2] :], generator)  # (n_box, 4)
    coords = torch.zeros(b, 0, 2, device=device)
    labels = torch.zeros(b, 0, dtype=torch.int, device=device)
    first, _ = _with_protocol_clicks(
        sample_points_in(targets[:n_pt], generator),
        torch.ones(n_pt, dtype=torch.int, device=device),
        None,
        targets[:n_pt],
        generator,
        config,
    )
    mask_input: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    totals = {"loss": 0.0, "mask": 0.0, "iou": 0.0}
    first_iou = last_iou = 0.0
    for r in range(n_rounds):
        if r > 0 and (float(torch.rand(1, generator=generator)) >= config.mask_only_prob):
            assert pred is not None
            new, new_labels = _with_protocol_clicks(
                *sample_error_points(pred, targets, generator), pred, targets, generator, config
            )
            coords = torch.cat([coords, new[:, None]], dim=1)
            labels = torch.cat([labels, new_labels[:, None]], dim=1)
        with devices.autocast(device, config.precision):
            prompts = []  # (sparse, dense) per kind of first prompt, in row order
            for kind, lo, hi in zip(
                (POINT, POINT_TEXT, TEXT, BOX), [0, *ends[:-1]], ends, strict=True
            ):
                if hi == lo:
                    continue
                rows = slice(lo, hi)
                points = None  # first point (if any), corrective points, padding point
                if kind in (POINT, POINT_TEXT):
                    one = torch.ones(hi - lo, 1, dtype=torch.int, device=device)
                    pts = torch.cat([first[rows, None], coords[rows]], dim=1)
                    points = (pts, torch.cat([one, labels[rows]], dim=1))
                elif coords.shape[1]:
                    points = (coords[rows], labels[rows])
                prompts.append(
                    pe(
                        points=points,
                        boxes=boxes if kind == BOX else None,
                        masks=None if mask_input is None else mask_input[rows],
                        text=None if vectors is None or kind in (POINT, BOX) else vectors[rows],
                    )
                )
            low, iou_pred = _decode(model, embedding, prompts)  # (B, 4, 4h, 4w), (B, 4)
        # Round 0 of a point prompt is ambiguous: the 3 multimask outputs compete and only
        # the lowest-loss one is trained; every other prompt (with text too) uses the
        # single-mask output.
        groups = [(slice(0, counts[0]), slice(1, 4)), (slice(counts[0], b), slice(0, 1))]
        if r > 0:
            groups = [(slice(0, b), slice(0, 1))]
        losses, chosen_low, chosen_pred = [], [], []
        for rows, toks in groups:
            if rows.stop == rows.start:
                continue
            logits = low[rows, toks].float()  # (n, T, 4h, 4w)
            resize = resize_matrix(logits.shape[-1], loss_size, device)
            per_mask = mask_loss(resize @ logits @ resize.T, soft[rows], config.focal_alpha)
            with torch.no_grad():  # full-size masks, as the predictor returns them
                full = F.interpolate(
                    logits.flatten(0, 1)[:, None],
                    (size, size),
                    mode="bilinear",
                    align_corners=False,
                ).reshape(*logits.shape[:2], size, size)  # (n, T, H, W)
            ious = iou_pred[rows, toks].float()
            m_loss = per_mask.min(dim=1).values
            i_loss = iou_loss(ious, full, tfloat[rows]).mean(dim=1)
            losses.append(torch.stack([m_loss, i_loss], dim=1))  # (n, 2)
            pick = ious.argmax(dim=1)  # feed back the mask with the highest predicted IoU
            n = torch.arange(logits.shape[0], device=device)
            chosen_low.append(logits[n, pick].detach())
            chosen_pred.append(full[n, pick] > 0)
        per_prompt = torch.cat(losses)  # (B, 2)
        stats = per_prompt.detach()
        round_loss = per_prompt.sum(dim=1).mean()
        if backward:
            (round_loss * (weight / n_rounds)).backward()
        mask_input = torch.cat(chosen_low)[:, None]  # (B, 1, 4h, 4w)
        pred = torch.cat(chosen_pred)  # (B, H, W)
        mean_iou = float(mask_iou(pred.float(), tfloat[:, 0]).mean())
        first_iou = mean_iou if r == 0 else first_iou
        last_iou = mean_iou
        totals["loss"] += float(round_loss.detach()) / n_rounds
        totals["mask"] += float(stats[:, 0].mean()) / n_rounds
        totals["iou"] += float(stats[:, 1].mean()) / n_rounds
    return StepStats(
        loss=totals["loss"],
        mask_loss=totals["mask"],
        iou_loss=totals["iou"],
        first_iou=first_iou,
        last_iou=last_iou,
        rounds=n_rounds,
        masks=b,
    )

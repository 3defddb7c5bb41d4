"""Prompt simulation for interactive training, following the SAM paper (Sec. 3 and App. A).

The first prompt of each mask is a positive point drawn uniformly inside it or its bounding
box with noise; each later point is drawn uniformly from the error region of the previous
prediction, positive where the prediction missed the object (false negative) and negative
where it spilled over (false positive). All functions are batched over B masks, follow the
input's device, and draw their randomness from an explicit CPU `torch.Generator` (moved to the
input's device after drawing, so a seed draws the same numbers on every device).
"""

from __future__ import annotations

import numpy as np
import torch

from ..eval.clicks import first_click, next_click
from ..masks import batched_mask_to_box

BOX_NOISE_FRACTION = 0.1  # noise std as a fraction of the box side (paper)
BOX_NOISE_MAX = 20.0  # px; no corner moves further than this (paper)


def _uniform_pixel(region: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One pixel drawn uniformly from each (B, H, W) bool region; rows with an empty region
    draw from the whole image. Returns (B, 2) float (X, Y) pixel indices."""
    b, h, w = region.shape
    flat = region.reshape(b, h * w)
    empty = ~flat.any(dim=1)
    flat = flat | empty[:, None]
    cum = flat.cumsum(dim=1)  # (B, HW): how many region pixels up to each pixel
    u = torch.rand(b, generator=generator).to(region.device)
    rank = (u * cum[:, -1]).long().clamp(max=cum[:, -1] - 1)  # which region pixel, 0-based
    index = torch.searchsorted(cum, (rank + 1)[:, None])[:, 0]  # first pixel reaching it
    return torch.stack([index % w, index // w], dim=1).float()


def sample_points_in(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A pixel drawn uniformly inside each of (B, H, W) bool masks: (B, 2) (X, Y)."""
    return _uniform_pixel(masks, generator)


def noisy_boxes(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Tight boxes (`samkit.masks.batched_mask_to_box`: XYXY, max edges inclusive) of
    (B, H, W) masks with Gaussian corner noise: std 10% of the box side along each axis, each
    corner offset clipped to 20 px, the box kept inside the image and non-empty.
    Returns (B, 4) float XYXY."""
    _, h, w = masks.shape
    boxes = batched_mask_to_box(masks).float()
    side = torch.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], 1)
    std = (BOX_NOISE_FRACTION * side).repeat(1, 2)  # (B, 4): x, y, x, y
    noise = torch.randn(boxes.shape, generator=generator).to(boxes.device) * std
    noisy = boxes + noise.clamp(-BOX_NOISE_MAX, BOX_NOISE_MAX)
    limit = boxes.new_tensor([w - 1, h - 1, w - 1, h - 1])
    noisy = torch.minimum(noisy.clamp(min=0), limit)
    x0 = torch.minimum(noisy[:, 0], noisy[:, 2])
    x1 = torch.maximum(noisy[:, 0], noisy[:, 2])
    y0 = torch.minimum(noisy[:, 1], noisy[:, 3])
    y1 = torch.maximum(noisy[:, 1], noisy[:, 3])
    return torch.stack([x0, y0, x1, y1], dim=1)


def sample_error_points(
    pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A corrective click for each of (B, H, W) bool predictions against their targets.

    The point is uniform over the error region (pred XOR target); its label is 1 (positive)
    in a false negative and 0 (negative) in a false positive. A perfect prediction gets a
    positive point inside the target. Returns coords (B, 2) (X, Y) and labels (B,) int.
    """
    error = pred ^ target
    perfect = ~error.flatten(1).any(1)
    region = torch.where(perfect[:, None, None], target, error)
    coords = _uniform_pixel(region, generator)
    x, y = coords[:, 0].long(), coords[:, 1].long()
    labels = target[torch.arange(target.shape[0], device=target.device), y, x].int()
    return coords, labels


def protocol_points(
    pred: torch.Tensor | None, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation protocol's click (`samkit.eval.clicks`) for each of (B, H, W) bool
    non-empty targets: without `pred`, the target's most interior point (label 1); with
    (B, H, W) bool `pred`, the most interior point of the largest error region, labelled 1 in
    a false negative and 0 in a false positive (a perfect prediction gets the target's
    interior point). Returns coords (B, 2) float (X, Y) and labels (B,) int."""
    truth = target.cpu().numpy()
    guess = None if pred is None else pred.cpu().numpy()
    clicks = [
        (guess is not None and next_click(guess[i], t)) or (*first_click(t), 1)
        for i, t in enumerate(truth)
    ]
    out = torch.from_numpy(np.array(clicks, dtype=np.float32).reshape(-1, 3)).to(target.device)
    return out[:, :2], out[:, 2].int()

"""The standard interactive-segmentation click protocol and IoU after each click.

The first click goes to the interior point farthest from the object's boundary. Each next
click goes to the point farthest from the boundary of the largest error region (by area):
positive if that region is a false negative (object missed), negative if it is a false
positive. The image border counts as a boundary. Masks are (H, W) bool; clicks are (X, Y).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..masks import mask_iou
from ..modeling import Sam
from ..predictor import SamPredictor


def interior_point(region: np.ndarray) -> tuple[int, int]:
    """(X, Y) of the pixel of a non-empty (H, W) bool region farthest from its boundary."""
    if not region.any():
        raise ValueError("interior_point needs a non-empty region")
    padded = np.pad(region, 1).astype(np.uint8)  # the image border is a boundary too
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def first_click(target: np.ndarray) -> tuple[int, int]:
    """The first click on a (H, W) bool target: its most interior point, (X, Y)."""
    return interior_point(target)


def next_click(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int] | None:
    """The corrective click (X, Y, label) for a (H, W) bool prediction, or None if perfect.

    label is 1 inside a false-negative region and 0 inside a false-positive one."""
    best: tuple[int, np.ndarray, int] | None = None  # (area, region, label)
    for error, label in ((target & ~pred, 1), (pred & ~target, 0)):
        if not error.any():
            continue
        _, comp, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[k, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            best = (area, comp == k, label)
    if best is None:
        return None
    x, y = interior_point(best[1])
    return x, y, best[2]


@dataclass
class ProtocolResult:
    ious: np.ndarray  # (B, n_clicks) IoU after each click, mask chosen by predicted IoU
    oracle_first: np.ndarray  # (B,) IoU of the best of the 3 first-click masks


def click_ious(model: Sam, image: np.ndarray, targets: np.ndarray, n_clicks: int = 3) -> np.ndarray:
    """IoU after each of `n_clicks` protocol clicks, (B, n_clicks); see `run_protocol`."""
    return run_protocol(model, image, targets, n_clicks).ious


def random_click(target: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly random (X, Y) pixel of a non-empty (H, W) bool target."""
    ys, xs = np.nonzero(target)
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


@torch.no_grad()
def run_protocol(
    model: Sam,
    image: np.ndarray,
    targets: np.ndarray,
    n_clicks: int = 3,
    *,
    rng: np.random.Generator | None = None,
) -> ProtocolResult:
    """Run the click protocol on every target of one image.

    image: (H, W, 3) uint8 RGB; targets: (B, H, W) bool, each non-empty. The first click uses
    the three multimask outputs and keeps the one with the highest predicted IoU (the oracle
    keeps the one closest to the target); later clicks use the single-mask output with all
    clicks so far and the previous low-res logits as mask input. With `rng`, the first click
    is a random pixel of the target instead of its most interior point.
    """
    predictor = SamPredictor(model)
    predictor.set_image(image)
    size = predictor.original_size
    assert size is not None
    b = targets.shape[0]
    coords = np.zeros((b, 0, 2), dtype=np.float32)
    labels = np.zeros((b, 0), dtype=np.int64)
    pred = np.zeros_like(targets)
    low_res: torch.Tensor | None = None
    ious = np.zeros((b, n_clicks))
    oracle = np.zeros(b)
    for k in range(n_clicks):
        if k == 0:
            pick = first_click if rng is None else (lambda t: random_click(t, rng))
            clicks = [(*pick(t), 1) for t in targets]
        else:  # a perfect mask keeps the protocol going with a click on its own interior
            clicks = [
                next_click(p, t) or (*first_click(t), 1) for p, t in zip(pred, targets, strict=True)
            ]
        new = np.array(clicks, dtype=np.float32)  # (B, 3): X, Y, label
        coords = np.concatenate([coords, new[:, None, :2]], axis=1)
        labels = np.concatenate([labels, new[:, None, 2].astype(np.int64)], axis=1)
        coords_t = torch.as_tensor(predictor.transform.apply_coords(coords, size))
        masks, scores, low = predictor.predict_torch(
            coords_t.to(predictor.device),
            torch.as_tensor(labels, device=predictor.device),
            mask_input=low_res,
            multimask_output=k == 0,
        )
        if k == 0:
            candidates = masks.cpu().numpy()  # (B, 3, H, W)
            per_mask = mask_iou(candidates, targets[:, None]).T  # (3, B)
            oracle = per_mask.max(axis=0)
        best = scores.argmax(dim=1)  # (B,)
        rows = torch.arange(b)
        pred = masks[rows, best].cpu().numpy()
        low_res = low[rows, best][:, None]  # (B, 1, h, w)
        ious[:, k] = mask_iou(pred, targets)
    return ProtocolResult(ious, oracle)

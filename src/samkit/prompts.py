"""Validation of prompts at the API boundary: shapes, finite values, labels, image bounds.

Each check raises ValueError saying what was expected and what arrived, before any model work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # validate() works without torch (the onnxruntime predictor uses it)
    import torch

# 1 foreground, 0 background, -1 padding ("not a point", as in the official ONNX decoder).
VALID_LABELS = (-1, 0, 1)


@dataclass(frozen=True)
class Prompts:
    point_coords: np.ndarray | None  # (N, 2) float64, (X, Y) pixels
    point_labels: np.ndarray | None  # (N,) int64
    box: np.ndarray | None  # (1, 4) float64, XYXY pixels
    mask_input: np.ndarray | None  # (1, h, w) float32 logits


def validate(
    point_coords: Any,
    point_labels: Any,
    box: Any,
    mask_input: Any,
    image_size: tuple[int, int],
    mask_size: tuple[int, int],
) -> Prompts:
    """Check numpy prompts for an image of `image_size` (H, W); return them as clean arrays.

    Coordinates may lie anywhere in [0, W] x [0, H] (pixel edges included)."""
    h, w = image_size
    coords = labels = boxes = masks = None
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if point_coords is not None:
        coords = _finite_array(point_coords, "point_coords", np.float64)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
            raise ValueError(
                f"point_coords must be Nx2 (X,Y) pixels with N >= 1; got shape {coords.shape}"
            )
        labels = _finite_array(point_labels, "point_labels", np.float64)
        if labels.shape != (len(coords),):
            raise ValueError(
                f"point_labels must have shape ({len(coords)},) to match point_coords; "
                f"got {labels.shape}"
            )
        if not np.isin(labels, VALID_LABELS).all():
            raise ValueError(
                f"point_labels must be 1 (foreground), 0 (background) or -1 (padding); "
                f"got {sorted(set(labels.tolist()))}"
            )
        labels = labels.astype(np.int64)
        _check_inside(coords, h, w, "point_coords")
    if box is not None:
        boxes = _finite_array(box, "box", np.float64)
        if boxes.shape not in ((4,), (1, 4)):
            raise ValueError(f"box must be a single XYXY box of shape (4,); got {boxes.shape}")
        boxes = boxes.reshape(1, 4)
        if boxes[0, 2] < boxes[0, 0] or boxes[0, 3] < boxes[0, 1]:
            raise ValueError(
                f"box must be XYXY with x0 <= x1 and y0 <= y1; got {boxes[0].tolist()}"
            )
        _check_inside(boxes.reshape(2, 2), h, w, "box")
    if mask_input is not None:
        masks = _finite_array(mask_input, "mask_input", np.float32)
        if masks.shape != (1, *mask_size):
            raise ValueError(
                f"mask_input must be 1x{mask_size[0]}x{mask_size[1]} low-res logits (as returned "
                f"in low_res_logits[i:i+1]); got shape {masks.shape}"
            )
    return Prompts(coords, labels, boxes, masks)


def validate_torch(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    text_embeddings: torch.Tensor | None = None,
) -> None:
    """Shape and finiteness checks for batched prompts in the resized frame."""
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    batch = []
    if point_coords is not None and point_labels is not None:
        if point_coords.ndim != 3 or point_coords.shape[-1] != 2:
            raise ValueError(f"point_coords must be BxNx2 (X,Y); got {tuple(point_coords.shape)}")
        if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
            raise ValueError(
                f"point_labels must be BxN = {tuple(point_coords.shape[:2])}; "
                f"got {tuple(point_labels.shape)}"
            )
        _finite_tensor(point_coords, "point_coords")
        batch.append(point_coords.shape[0])
    if boxes is not None:
        if boxes.ndim not in (2, 3) or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be Bx4 XYXY; got {tuple(boxes.shape)}")
        _finite_tensor(boxes, "boxes")
        batch.append(boxes.shape[0])
    if mask_input is not None:
        if mask_input.ndim != 4 or mask_input.shape[1] != 1:
            raise ValueError(f"mask_input must be Bx1xHxW; got {tuple(mask_input.shape)}")
        _finite_tensor(mask_input, "mask_input")
        batch.append(mask_input.shape[0])
    if text_embeddings is not None:
        if text_embeddings.ndim != 2:
            raise ValueError(
                "text_embeddings must be BxD text-encoder vectors; "
                f"got {tuple(text_embeddings.shape)}"
            )
        _finite_tensor(text_embeddings, "text_embeddings")
        batch.append(text_embeddings.shape[0])
    if len(set(batch)) > 1:
        raise ValueError(f"prompt batch sizes differ: {batch} (points, boxes, masks, text)")


def _finite_array(value: Any, name: str, dtype: type) -> np.ndarray:
    try:
        arr: np.ndarray = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; got {type(value).__name__}: {err}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _finite_tensor(value: torch.Tensor, name: str) -> None:
    if value.is_floating_point() and not bool(value.isfinite().all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_inside(xy: np.ndarray, h: int, w: int, name: str) -> None:
    outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    if outside.any():
        bad = xy[outside][0].tolist()
        raise ValueError(
            f"{name} must lie inside the image (0 <= X <= {w}, 0 <= Y <= {h}); got {bad}"
        )

"""`segment_anything.utils.amg`: the automatic mask generator's helpers under their official
names, re-exported from `samkit.masks`, `samkit.rle` and `samkit.mask_data`."""

from __future__ import annotations

from typing import Any

import torch

from ..mask_data import MaskData
from ..masks import (
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from ..rle import coco_rle_from_uncompressed, mask_to_rle

__all__ = [
    "MaskData",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


def mask_to_rle_pytorch(tensor: torch.Tensor) -> list[dict[str, Any]]:
    """Uncompressed RLEs of (B, H, W) bool masks (`samkit.rle.mask_to_rle`)."""
    return mask_to_rle(tensor)


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """An uncompressed RLE as COCO's compressed string form (`samkit.rle`, no pycocotools)."""
    return coco_rle_from_uncompressed(uncompressed_rle)

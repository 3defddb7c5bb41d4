"""Pure, batched mask utilities: RLE, boxes, areas, IoU, stability, NMS, grids, crops, polygons.

Torch functions run on their input's device and keep its dtype where the result is made
of the input's values; numpy/OpenCV functions take and return arrays. Boxes are XYXY in
pixels, points are (X, Y), masks are (..., H, W). Semantics follow Meta's
`segment_anything.utils.amg` (and `torchvision.ops` for NMS) so that the automatic mask
generator reproduces the official results; the differences are listed where they occur.
The RLE codecs live in `samkit.rle` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F

from .rle import (
    area_from_rle,
    coco_rle_from_uncompressed,
    decode_coco_rle,
    encode_coco_rle,
    mask_to_rle,
    rle_to_mask,
)

__all__ = [
    "Polygon",
    "area_from_masks",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "batched_nms",
    "box_area",
    "box_iou",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_rle_from_uncompressed",
    "decode_coco_rle",
    "encode_coco_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_iou",
    "mask_iou_matrix",
    "mask_to_polygons",
    "mask_to_rle",
    "polygons_to_mask",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


# ---------------------------------------------------------------- boxes, areas, scores


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) masks (non-zero = inside) -> (..., 4) XYXY boxes, max edges inclusive.

    An empty mask gets [0, 0, 0, 0]. Bool or integer masks give int64 boxes (like official);
    floating masks give boxes of their own dtype.
    """
    if masks.dim() < 2:
        raise ValueError(f"masks must be (..., H, W); got shape {tuple(masks.shape)}")
    dtype = masks.dtype if masks.is_floating_point() else torch.int64
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=dtype, device=masks.device)
    inside = masks if masks.dtype == torch.bool else masks != 0
    rows = inside.amax(dim=-1).to(torch.uint8)  # (..., H); amax: faster than any on CPU
    cols = inside.amax(dim=-2).to(torch.uint8)  # (..., W)
    # argmax returns the first maximum: the first set row/column from either end.
    top = rows.argmax(dim=-1)
    bottom = (h - 1) - rows.flip(-1).argmax(dim=-1)
    left = cols.argmax(dim=-1)
    right = (w - 1) - cols.flip(-1).argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)  # (..., 4)
    boxes = boxes * rows.amax(dim=-1, keepdim=True)  # empty masks -> 0
    return boxes.to(dtype)


def box_xyxy_to_xywh(box_xyxy: torch.Tensor) -> torch.Tensor:
    """XYXY -> XYWH over the last dim, (..., 4); a new tensor of the same dtype.

    Official takes one (4,) box; this gives the same result for it and also works batched.
    """
    x0, y0, x1, y1 = box_xyxy.unbind(-1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N,) areas ``(x1 - x0) * (y1 - y0)``, as torchvision."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """(N, 4) x (M, 4) XYXY -> (N, M) IoU, computed as torchvision (0/0 gives NaN)."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    x0a, y0a, x1a, y1a = (c[:, None] for c in boxes1.T.contiguous())  # (N, 1) each
    x0b, y0b, x1b, y1b = boxes2.T.contiguous()  # (M,) each
    w = (torch.min(x1a, x1b) - torch.max(x0a, x0b)).clamp_(min=0)  # (N, M)
    h = (torch.min(y1a, y1b) - torch.max(y0a, y0b)).clamp_(min=0)
    inter = w.mul_(h)
    return inter / (area1[:, None] + area2[None, :] - inter)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy non-maximum suppression within each category of `idxs`.

    Args:
      boxes: (N, 4) float XYXY. scores: (N,). idxs: (N,) int category of each box; boxes of
        different categories never suppress each other.
      iou_threshold: a box is dropped when its IoU with a kept, higher-ranked box of its
        category is > this.
    Returns:
      (N_kept,) int64 indices into `boxes`, by decreasing score; equal scores are ranked by
      index. Same as `torchvision.ops.batched_nms` on CPU, ties included (IoU with the same
      float formula, always on the boxes as given: torchvision's offset-per-category trick
      may round differently when categories differ). Uses an N x N bool matrix.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b, cat = boxes[order], idxs[order]
    # Which box would drop which, in row blocks so the float temporaries stay small. A box
    # only drops lower-ranked ones, so each block needs the columns from its first row on.
    overlap = torch.zeros(n, n, dtype=torch.bool, device=boxes.device)
    step = max(1, (1 << 22) // n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        iou = box_iou(b[start:stop], b[start:])
        same = cat[start:stop, None] == cat[None, start:]
        overlap[start:stop, start:] = (iou > iou_threshold) & same
    over = overlap.cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    kept = []
    for i in range(n):  # greedy: each kept box removes what it overlaps further down
        if not removed[i]:
            kept.append(i)
            removed |= over[i]
    return order[torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)]


def calculate_stability_score(
    masks: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """Stability of (..., H, W) mask logits: IoU of the masks cut at threshold +/- offset.

    The high cut lies inside the low one, so the IoU is count(high) / count(low). Counts use
    the official dtypes (int16 per row, int32 in total) so scores are bit-identical; the
    result has torch's default float dtype (float32) and is NaN where the low mask is empty.
    """
    high = (masks > (mask_threshold + threshold_offset)).sum(-1, dtype=torch.int16)
    low = (masks > (mask_threshold - threshold_offset)).sum(-1, dtype=torch.int16)
    return high.sum(-1, dtype=torch.int32) / low.sum(-1, dtype=torch.int32)


def area_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) masks (non-zero = inside) -> (...,) int64 pixel counts."""
    return (masks != 0).sum(dim=(-2, -1))


@overload
def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...
@overload
def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray: ...
def mask_iou(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> Any:
    """IoU of bool masks over their last two axes: (..., H, W) and (..., H, W) -> (...).

    The leading axes broadcast, e.g. (B, 3, H, W) candidates against (B, 1, H, W) targets.
    Two empty masks have IoU 1. Tensors give float32 on their device, arrays float64.
    """
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        raise TypeError(
            f"mask_iou takes two tensors or two arrays; got {type(a).__name__} and "
            f"{type(b).__name__}"
        )
    if a.dtype not in (torch.bool, np.bool_) or b.dtype not in (torch.bool, np.bool_):
        raise TypeError(
            f"mask_iou takes bool masks; got {a.dtype} and {b.dtype}. Threshold logits "
            "first (logits > 0)"
        )
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"masks must be (..., H, W); got shapes {a.shape} and {b.shape}")
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        inter = (a & b).sum(dim=(-2, -1)).float()
        union = (a | b).sum(dim=(-2, -1)).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    inter_np = (a & b).sum(axis=(-2, -1))
    union_np = (a | b).sum(axis=(-2, -1))
    return np.where(union_np > 0, inter_np / np.maximum(union_np, 1), 1.0)


@overload
def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...
@overload
def mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray: ...
def mask_iou_matrix(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> Any:
    """IoU of every mask of (N, H, W) bool `a` with every mask of (K, H, W) bool `b`: (N, K),
    as `mask_iou(a[:, None], b[None])` gives (tensors float32, arrays float64), from one
    matrix product of the masks as 0/1 numbers (exact: the sums are integers that float32,
    or float64 beyond 2^24 pixels, holds exactly) rather than N x K pixel-wise ANDs and ORs."""
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        raise TypeError(
            f"mask_iou_matrix takes two tensors or two arrays; got {type(a).__name__} and "
            f"{type(b).__name__}"
        )
    if a.dtype not in (torch.bool, np.bool_) or b.dtype not in (torch.bool, np.bool_):
        raise TypeError(f"mask_iou_matrix takes bool masks; got {a.dtype} and {b.dtype}")
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks must be (N, H, W) and (K, H, W); got {a.shape} and {b.shape}")
    wide = a.shape[1] * a.shape[2] > 2**24
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        exact = torch.float64 if wide else torch.float32
        fa, fb = a.flatten(1).to(exact), b.flatten(1).to(exact)
        inter = fa @ fb.T
        union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        return iou.float()
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    counts = np.float64 if wide else np.float32
    na, nb = a.reshape(len(a), -1).astype(counts), b.reshape(len(b), -1).astype(counts)
    inter_np = (na @ nb.T).astype(np.float64)
    union_np = na.sum(1, dtype=np.float64)[:, None] + nb.sum(1, dtype=np.float64)[None] - inter_np
    return np.where(union_np > 0, inter_np / np.maximum(union_np, 1), 1.0)


# ---------------------------------------------------------------- point grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) (X, Y) points in [0, 1], the centres of an n x n grid of cells, X fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)  # (n, n) each; xs varies along columns
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """Point grids for crop layers 0..n_layers; layer i has n_per_side / scale**i per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, ints) of an (H, W) image, and the layer of each.

    Layer 0 is the whole image; layer i >= 1 is a 2**i x 2**i grid of crops (X outer, Y
    inner) of equal size overlapping by ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels,
    clipped to the image. The float/int steps are official's, so the boxes are identical.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n))
        # Crop length so that n crops overlapping by `overlap` cover the side.
        crop_w = math.ceil((overlap * (n - 1) + im_w) / n)
        crop_h = math.ceil((overlap * (n - 1) + im_h) / n)
        xs = [(crop_w - overlap) * i for i in range(n)]
        ys = [(crop_h - overlap) * i for i in range(n)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 4) XYXY boxes in a crop's frame -> the image's frame (shifted by the crop's x0, y0)."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 2) (X, Y) points in a crop's frame -> the image's frame."""
    x0, y0 = crop_box[0], crop_box[1]
    return points + torch.tensor([x0, y0], device=points.device)


def uncrop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """(..., h, w) masks of a crop -> (..., orig_h, orig_w), zero outside the crop.

    Returns `masks` itself when the crop is the whole image.
    """
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return F.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """(N,) bool: whether each (N, 4) crop-frame box lies within `atol` of an edge of the crop
    that is not also an edge of the image (`orig_box`). Compared in float32 (float64 input
    stays float64)."""
    dtype = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    crop = torch.as_tensor(crop_box, dtype=dtype, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=dtype, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).to(dtype)
    near_crop = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def batch_iterator(batch_size: int, *args: Any) -> Iterator[list[Any]]:
    """Yield ``[arg[i:i + batch_size] for arg in args]`` over equal-length `args`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not args:
        raise ValueError("batch_iterator needs at least one sequence to batch")
    lengths = [len(a) for a in args]
    if any(n != lengths[0] for n in lengths):
        raise ValueError(f"batch_iterator needs sequences of equal length; got {lengths}")
    for start in range(0, lengths[0], batch_size):
        yield [a[start : start + batch_size] for a in args]


# ---------------------------------------------------------------- cleanup and polygons


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than `area_thresh` pixels.

    Regions are 8-connected. In "islands" mode, when every island is small the largest is
    kept. Returns the (H, W) bool mask and whether it changed (`mask` itself when not).
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands'; got {mode!r}")
    holes = mode == "holes"
    working = (np.asarray(mask, dtype=bool) ^ holes).astype(np.uint8)  # regions to judge
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the background
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    # Which labels end up inside the mask: for holes, the mask (label 0) plus small holes;
    # for islands, the islands that are not small (or the largest one if all are).
    inside = np.zeros(n_labels, dtype=bool)
    if holes:
        inside[0] = True
        inside[1:] = small
    elif small.all():
        inside[int(np.argmax(sizes)) + 1] = True
    else:
        inside[1:] = ~small
    return inside[labels], True


@dataclass
class Polygon:
    """One connected outline of a mask: an (N, 2) float (X, Y) exterior ring and its hole
    rings, in pixel-centre coordinates (pixel (x, y) is the point (x, y))."""

    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 0.0) -> list[Polygon]:
    """Outlines of an (H, W) mask (non-zero = inside), one `Polygon` per 8-connected piece.

    Rings run through the centres of the border pixels (OpenCV's `findContours`, RETR_CCOMP,
    collinear points dropped). `tolerance` > 0 simplifies each ring with Douglas-Peucker
    (`approxPolyDP`, in pixels). Rings with fewer than 3 points are dropped, and a polygon
    whose exterior is dropped goes with its holes.

    Round trip: with tolerance 0, ``polygons_to_mask(mask_to_polygons(m), h, w) == m``
    exactly for masks with no 1-pixel-thin parts (a piece 1 or 2 pixels in size is lost,
    and a hole or piece that touches its neighbour only at a corner may not come back).
    """
    import cv2

    img = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {img.shape}")
    contours, hierarchy = cv2.findContours(img, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    parents = hierarchy[0][:, 3]  # -1 for exteriors, the exterior's index for holes

    def ring(i: int) -> np.ndarray | None:
        c = contours[i]
        if tolerance > 0:
            c = cv2.approxPolyDP(c, tolerance, True)
        pts = c.reshape(-1, 2).astype(np.float64)
        return pts if len(pts) >= 3 else None

    polygons: dict[int, Polygon] = {}
    for i in np.flatnonzero(parents < 0):
        ext = ring(int(i))
        if ext is not None:
            polygons[int(i)] = Polygon(exterior=ext)
    for i in np.flatnonzero(parents >= 0):
        parent = polygons.get(int(parents[i]))
        hole = ring(int(i))
        if parent is not None and hole is not None:
            parent.holes.append(hole)
    return list(polygons.values())


def polygons_to_mask(polygons: Sequence[Polygon], h: int, w: int) -> np.ndarray:
    """(h, w) bool mask: the union of the polygons' exteriors minus their holes.

    Vertices are rounded to the nearest pixel (pixel-centre coordinates) and rasterised
    with `cv2.fillPoly`, ring edges included. A hole clears its interior but keeps its ring:
    the ring pixels are the border of the piece around it, as `mask_to_polygons` writes.
    Each polygon is drawn on its own, so an island inside another polygon's hole survives.
    """
    import cv2

    out = np.zeros((h, w), dtype=bool)
    for poly in polygons:
        ext = _int_ring(poly.exterior)
        if len(ext) == 0:
            continue
        x0, y0 = np.maximum(ext.min(axis=0), 0)
        x1, y1 = np.minimum(ext.max(axis=0) + 1, (w, h))
        if x1 <= x0 or y1 <= y0:
            continue  # entirely outside the image
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        shift = (-int(x0), -int(y0))
        cv2.fillPoly(canvas, [ext], 1, offset=shift)
        holes = [r for r in (_int_ring(hole) for hole in poly.holes) if len(r)]
        if holes:
            cv2.fillPoly(canvas, holes, 0, offset=shift)
            moved = [r + np.array(shift, dtype=np.int32) for r in holes]
            cv2.polylines(canvas, moved, True, 1, lineType=cv2.LINE_8)
        out[y0:y1, x0:x1] |= canvas.astype(bool)
    return out


def _int_ring(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.rint(pts).astype(np.int32)

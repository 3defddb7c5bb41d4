"""Zero-shot edge detection, the SAM paper's protocol (§7.2, details in appendix D.2), and
its evaluation on a BSDS500-layout folder with the BSDS boundary benchmark (`edge_match`).

Edge map of an image (`edge_map`): prompt SAM with a regular grid of foreground points (16 x
16 by default, no crops), three masks per point (768); no filtering by predicted IoU or
stability; redundant masks removed by box NMS (IoU 0.7, ranked by predicted IoU, as the
automatic mask generator). For each kept mask, a Sobel filter on its unthresholded
probability map (the sigmoid of its logits at image size), zeroed everywhere except the
mask's outer boundary (the pixels outside the mask, logits <= 0, that touch it, 8-connected).
Then the pixel-wise max over masks, normalised linearly to [0, 1], and edge NMS: a pixel is
kept only when no neighbour one pixel along the gradient direction (of the mask that gave its
maximum; bilinear samples) is stronger, which thins the edges to one pixel.

A BSDS folder (`find_items`): DIR/images/<stem>.jpg|.jpeg|.png and, for each, either
DIR/groundTruth/<stem>.mat (BSDS500: a cell array groundTruth{k}.Boundaries, one per
annotator; reading it needs scipy) or PNG boundary maps, DIR/groundTruth/<stem>.png and/or
<stem>_<k>.png, one per annotator (non-zero = boundary).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import masks as M
from ..automatic import CHUNK_BYTES
from ..interrupt import Interrupted, images
from ..modeling import Sam
from ..predictor import SamPredictor
from .edge_match import Counts, image_counts, require_scipy

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BOX_NMS_THRESH = 0.7  # the automatic mask generator's default


@torch.no_grad()
def edge_map(
    model: Sam,
    image: np.ndarray,
    *,
    points_per_side: int = 16,
    box_nms_thresh: float = BOX_NMS_THRESH,
) -> np.ndarray:
    """(H, W) float32 edge strengths in [0, 1] of an (H, W, 3) uint8 RGB image."""
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1; got {points_per_side}")
    h, w = image.shape[:2]
    predictor = SamPredictor(model)
    predictor.set_image(image)
    points = M.build_point_grid(points_per_side) * np.array([w, h])  # (N, 2) (X, Y) pixels
    size = model.img_size
    # points a batch, so that its masks' logits at input and image size stay under CHUNK_BYTES
    per_batch = max(1, CHUNK_BYTES // (4 * 3 * (size * size + h * w)))
    boxes, scores, parts = [], [], []
    first = 0
    for (batch,) in M.batch_iterator(per_batch, points):
        coords = predictor.transform.apply_coords(batch, (h, w))
        coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)
        labels = torch.ones(len(batch), 1, dtype=torch.int, device=predictor.device)
        logits, iou, _ = predictor.predict_torch(
            coords_t[:, None, :], labels, multimask_output=True, return_logits=True
        )  # (B, 3, H, W), (B, 3)
        logits = logits.flatten(0, 1)  # (3B, H, W)
        boxes.append(M.batched_mask_to_box(logits > model.mask_threshold))
        scores.append(iou.flatten())
        index, *rest = boundary_gradients(logits, model.mask_threshold)
        parts.append((index + first, *rest))
        first += len(logits)
    all_boxes = torch.cat(boxes).float()  # (N, 4) XYXY, on the model's device
    keep = M.batched_nms(
        all_boxes, torch.cat(scores), torch.zeros(first, device=all_boxes.device), box_nms_thresh
    )
    mask, flat, magnitude, gx, gy = (np.concatenate(c) for c in zip(*parts, strict=True))
    kept = np.isin(mask, keep.cpu().numpy())
    return _edges(h, w, flat[kept], magnitude[kept], gx[kept], gy[kept])


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def boundary_gradients(
    logits: torch.Tensor, threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradients of sigmoid(logits) on each mask's outer boundary: the pixels outside
    the mask (logits <= threshold) with an 8-neighbour inside it.

    logits: (N, H, W). Returns numpy arrays (on the CPU) with one entry per boundary pixel of
    each mask: the mask's index in 0..N-1, the flat pixel index (y * W + x), the gradient's
    magnitude and its x and y components (Sobel units: 4 across a sharp step from 0 to 1)."""
    w = logits.shape[-1]
    prob = torch.sigmoid(logits.float())[:, None]  # (N, 1, H, W)
    kernel = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(prob.device)  # (2, 1, 3, 3): x, y
    grad = F.conv2d(F.pad(prob, (1, 1, 1, 1), mode="replicate"), kernel)  # (N, 2, H, W)
    inside = (logits > threshold)[:, None].float()
    outer = (F.max_pool2d(inside, 3, stride=1, padding=1) > 0) & (inside == 0)  # (N, 1, H, W)
    index, y, x = torch.nonzero(outer[:, 0], as_tuple=True)
    gx, gy = grad[index, 0, y, x], grad[index, 1, y, x]
    return (
        index.cpu().numpy(),
        (y * w + x).cpu().numpy(),
        torch.hypot(gx, gy).cpu().numpy(),
        gx.cpu().numpy(),
        gy.cpu().numpy(),
    )


def _edges(
    h: int, w: int, flat: np.ndarray, magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray
) -> np.ndarray:
    """Pixel-wise max of the masks' boundary gradients, normalised to [0, 1], thinned by edge
    NMS along the gradient of the mask that gave each pixel its maximum."""
    edges = np.zeros(h * w, dtype=np.float32)
    dx = np.zeros(h * w, dtype=np.float32)
    dy = np.zeros(h * w, dtype=np.float32)
    order = np.lexsort((magnitude, flat))  # by pixel, then by magnitude
    last = np.ones(len(order), dtype=bool)  # the strongest entry of each pixel
    last[:-1] = flat[order][1:] != flat[order][:-1]
    win = order[last]
    edges[flat[win]], dx[flat[win]], dy[flat[win]] = magnitude[win], gx[win], gy[win]
    low, high = float(edges.min()), float(edges.max())
    if high <= low:
        return np.zeros((h, w), dtype=np.float32)
    normalised = ((edges - low) / (high - low)).reshape(h, w)
    return edge_nms(normalised, dx.reshape(h, w), dy.reshape(h, w))


def edge_nms(edges: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Zero every pixel of (H, W) `edges` that has a stronger neighbour one pixel away along
    its gradient (gx, gy) (either way; values between pixels sampled bilinearly)."""
    out = edges.copy()
    y, x = np.nonzero((edges > 0) & ((gx != 0) | (gy != 0)))
    norm = np.hypot(gx[y, x], gy[y, x])
    ux, uy = gx[y, x] / norm, gy[y, x] / norm  # unit gradient
    value = edges[y, x]
    weaker = np.zeros(len(y), dtype=bool)
    for sign in (1.0, -1.0):
        weaker |= _bilinear(edges, x + sign * ux, y + sign * uy) > value
    out[y[weaker], x[weaker]] = 0.0
    return out


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W) image sampled at float (x, y), bilinearly; 0 outside the image."""
    h, w = image.shape
    padded = np.pad(image, 1)  # a ring of zeros: pixel (y, x) is padded[y + 1, x + 1]
    x = np.clip(x + 1, 0, w + 1)
    y = np.clip(y + 1, 0, h + 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w)
    y0 = np.minimum(np.floor(y).astype(np.int64), h)
    fx, fy = x - x0, y - y0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# -- a BSDS folder ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EdgeItem:
    """One image of a BSDS folder and its ground-truth file(s): one .mat, or PNGs."""

    stem: str
    image: Path
    ground_truth: tuple[Path, ...]


def find_items(root: str | Path, limit: int | None = None) -> list[EdgeItem]:
    """The images of a BSDS folder (sorted by name; the first `limit`), each checked to have
    ground truth of its size. Raises ValueError naming what is missing or wrong."""
    from ..io.images import image_size

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (a BSDS folder with images/ and groundTruth/)")
    image_dir, gt_dir = root / "images", root / "groundTruth"
    for folder in (image_dir, gt_dir):
        if not folder.is_dir():
            raise ValueError(
                f"{root}: no {folder.name}/ folder (a BSDS folder has images/ and groundTruth/)"
            )
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{image_dir}: no images (.jpg, .jpeg or .png)")
    items = []
    for path in paths[:limit]:
        item = EdgeItem(path.stem, path, _ground_truth_files(gt_dir, path.stem))
        width, height = image_size(path)
        boundaries = read_boundaries(item.ground_truth)
        if boundaries.shape[1:] != (height, width):
            raise ValueError(
                f"{path} is {width}x{height} but its ground truth {item.ground_truth[0]} is "
                f"{boundaries.shape[2]}x{boundaries.shape[1]} (width x height)"
            )
        items.append(item)
    return items


def _ground_truth_files(gt_dir: Path, stem: str) -> tuple[Path, ...]:
    mat = gt_dir / f"{stem}.mat"
    if mat.is_file():
        return (mat,)
    numbered = re.compile(re.escape(stem) + r"_(\d+)\.png")
    found = [(int(m.group(1)), p) for p in gt_dir.iterdir() if (m := numbered.fullmatch(p.name))]
    pngs = [p for _, p in sorted(found)]
    if (gt_dir / f"{stem}.png").is_file():
        pngs.insert(0, gt_dir / f"{stem}.png")
    if not pngs:
        raise ValueError(
            f"no ground truth for image {stem!r}: expected {mat} or {gt_dir}/{stem}.png "
            f"(or {stem}_1.png, {stem}_2.png, ... one per annotator)"
        )
    return tuple(pngs)


def read_boundaries(paths: Sequence[Path]) -> np.ndarray:
    """(K, H, W) bool boundary maps, one per annotator, of one .mat or of PNGs."""
    if len(paths) == 1 and paths[0].suffix.lower() == ".mat":
        return _read_mat(paths[0])
    maps = [_read_png(p) for p in paths]
    for p, m in zip(paths[1:], maps[1:], strict=True):
        if m.shape != maps[0].shape:
            raise ValueError(
                f"{p} is {m.shape[1]}x{m.shape[0]} but {paths[0]} is "
                f"{maps[0].shape[1]}x{maps[0].shape[0]} (width x height)"
            )
    return np.stack(maps)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            values = np.asarray(img)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read this ground-truth PNG ({err})") from None
    if values.ndim == 3:  # colour: any non-zero colour channel (not alpha) marks a boundary
        values = values[..., :3] if values.shape[2] >= 3 else values[..., :1]
        return np.asarray((values != 0).any(axis=2))
    return np.asarray(values != 0)


def _read_mat(path: Path) -> np.ndarray:
    require_scipy(f"reading {path}")
    from scipy.io import loadmat

    try:
        data = loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as err:  # scipy raises many types for a file that is not MATLAB's
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    if "groundTruth" not in data:
        raise ValueError(f"{path}: no 'groundTruth' variable (a BSDS500 ground-truth file)")
    maps = []
    for k, entry in enumerate(np.atleast_1d(data["groundTruth"]).ravel()):
        boundaries = getattr(entry, "Boundaries", None)
        if not isinstance(boundaries, np.ndarray) or boundaries.ndim != 2:
            raise ValueError(f"{path}: groundTruth{{{k + 1}}} has no 2-D Boundaries map")
        maps.append(boundaries != 0)
    if not maps:
        raise ValueError(f"{path}: groundTruth is empty")
    if len({m.shape for m in maps}) > 1:
        raise ValueError(f"{path}: the annotators' Boundaries differ in size")
    return np.stack(maps)


def evaluate(
    model: Sam,
    items: Sequence[EdgeItem],
    thresholds: np.ndarray,
    *,
    points_per_side: int = 16,
    progress: bool = True,
) -> list[Counts]:
    """Edge map and benchmark counts of each item. Interrupted (SIGINT, SIGTERM: see
    `samkit.interrupt`), raises `Interrupted` saying how many images were done."""
    from tqdm import tqdm

    from ..io import load_image

    counts = []
    bar = tqdm(items, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for item in bar:
            edges = edge_map(model, load_image(item.image), points_per_side=points_per_side)
            counts.append(image_counts(edges, read_boundaries(item.ground_truth), thresholds))
    except Interrupted as stop:
        bar.close()
        raise Interrupted(stop.signum, f"{images(len(counts))} evaluated") from None
    return counts

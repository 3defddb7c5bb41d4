"""A mask decoded again on an enlarged crop of the image around it: sharper outlines for
small objects.

A model's masks are its decoder's upscaling of the image embedding (the bundled model's:
4 px a token), so an object a few tokens wide comes out with round corners and a rough
outline. Cut from the resized input image (kept with the embedding for a text grounder) a
window around the mask, enlarged to the model's input size so that the mask's longest side
fills ZOOM_TARGET of it (at most MAX_ZOOM times), the same object spans up to MAX_ZOOM times
more tokens. The window is embedded (the cache neither read nor filled), the mask's box is
the prompt, and of the three masks the one that overlaps the first mask most is kept, as
logits in the image's low-res frame. A mask already that large is not zoomed.

On held-out synthetic scenes, the bundled model's box prompts of the true objects gave
0.871 mIoU as they are and 0.905 zoomed (docs/training.md, "Zoomed answers").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..masks import mask_iou

if TYPE_CHECKING:
    from ..predictor import SamPredictor

ZOOM_TARGET = 40 / 128  # of the model's input side: what a zoomed mask's longest side fills
MAX_ZOOM = 4.0
EMPTY_LOGIT = -20.0  # low-res logits of "no mask": outside a window, or nothing proposed


@dataclass(frozen=True)
class Window:
    """A crop of the resized input image, in its pixels."""

    x0: int
    y0: int
    width: int
    height: int


def zoom_window(
    box: tuple[int, int, int, int], input_size: tuple[int, int], side: int
) -> Window | None:
    """The window around `box` (x0, y0, x1, y1 in input pixels, x1 and y1 past the last)
    whose enlargement to the model's input `side` zooms the box's longest side to
    ZOOM_TARGET * side (at most MAX_ZOOM times); None when the box is that large already.
    The window is square, centred on the box, and moved (then cut) to lie inside the
    (h, w) image."""
    longest = max(box[2] - box[0], box[3] - box[1], 1)
    zoom = min(ZOOM_TARGET * side / longest, MAX_ZOOM)
    if zoom <= 1.0:
        return None
    h, w = input_size
    span = round(side / zoom)
    width, height = min(span, w), min(span, h)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = round(min(max(cx - width / 2, 0), w - width))
    y0 = round(min(max(cy - height / 2, 0), h - height))
    return Window(x0, y0, width, height)


def zoomed(
    predictor: SamPredictor, low_res: torch.Tensor, score: float
) -> tuple[torch.Tensor, float]:
    """One mask's (h, w) low-res logits of the predictor's current image decoded again on its
    zoom window, and the decoder's predicted IoU of it; the logits and `score` as given when
    the mask is empty or not small enough to zoom."""
    state = predictor._require_image()
    if state.image is None:
        raise RuntimeError("the image was set without the input image a zoom crops")
    model = predictor.model
    side = model.image_encoder.img_size
    h, w = state.input_size
    logits = model.postprocess_masks(low_res[None, None], state.input_size, state.input_size)
    mask = (logits[0, 0] > model.mask_threshold).cpu().numpy()  # (h, w), input frame
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return low_res, score
    window = zoom_window((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), (h, w), side)
    if window is None:
        return low_res, score
    x0, y0, x1, y1 = window.x0, window.y0, window.x0 + window.width, window.y0 + window.height
    crop = np.ascontiguousarray(state.image[y0:y1, x0:x1])
    (crop_state,) = predictor._embed(
        [predictor._input_tensor(crop, model.image_format)], cached=False
    )
    box = np.array([xs.min() - x0, ys.min() - y0, xs.max() + 1 - x0, ys.max() + 1 - y0])
    resized = predictor.transform.apply_boxes(box[None], (window.height, window.width))
    box_t = torch.as_tensor(resized, dtype=torch.float, device=predictor.device)
    predictor.set_embedding(crop_state)
    try:
        crop_low_res, iou = predictor.decode_low_res(None, None, box_t, None, True)
    finally:
        predictor.set_embedding(state)
    crop_logits = model.postprocess_masks(
        crop_low_res, crop_state.input_size, (window.height, window.width)
    )[0]  # (3, height, width)
    candidates = (crop_logits > model.mask_threshold).cpu().numpy()
    best = int(np.argmax(mask_iou(candidates, mask[None, y0:y1, x0:x1])))
    canvas = torch.full((side, side), EMPTY_LOGIT, device=low_res.device)
    canvas[y0:y1, x0:x1] = crop_logits[best].to(canvas.device)
    if tuple(low_res.shape) != (side, side):
        size = tuple(low_res.shape)
        canvas = F.interpolate(canvas[None, None], size, mode="bilinear", align_corners=False)[0, 0]
    return canvas, float(iou[0, best])

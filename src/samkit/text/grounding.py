"""Text grounding: which of an image's candidate masks a phrase names.

A model's `text_grounder` scores masks against phrases. The masks are proposed by the model
itself: a grid of point prompts, three masks each (`samkit.text.ground`), or the masks of
the user's own clicks. Each mask is described by what it looks like (`region_features`): the
basic colour names of its pixels and of a ring around it, colour statistics, size, numbers
about its outline, and a small square crop of the mask with the pixels around it (with the
crop's colour `silhouettes`, and the `polar_spectrum` of its mask and of its soft
silhouette). The grounder embeds that description and the phrase's text-encoder
vector into one space; the score is their dot product plus how likely the mask is to have
the colour and shape the phrase names (`TextGrounder.score`). The text alone then gives the
best scoring proposal; text with clicks picks among the clicks' masks.

This is a second way of taking text besides the paper's text token
(`PromptEncoder.text_projection`): the grounder leaves the encoder and decoder untouched, so
point and box prompts give exactly what they gave before.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.phrases import COLOUR_NAMES, colour_indices_hsv, hsv
from ..data.synthetic import SHAPES

CROP = 24  # px side of the square crop of a mask and the pixels around it
RING = 2  # px width of the ring around a mask whose colours are described too
MAX_SIDE = 256  # longest image side at which masks are described
N_COLOURS = len(COLOUR_NAMES)
N_OUTLINE = 9  # log area fraction, then `_outline`'s numbers
ANGLES, RADII = 32, 12  # the polar grid a crop's mask is sampled on (`polar_spectrum`)
RING_TERMS = 9  # Fourier terms kept of each radius's ring
N_POLAR = (ANGLES // 2) + RADII * RING_TERMS + 1
# colour distances (0-1 RGB) of a crop's `silhouettes`: a soft one, then a sharp one
SILHOUETTE_SIGMAS = (0.12, 0.04)
SILHOUETTE_REACH = 2  # crop px beyond the mask that a silhouette may reach
# Per-mask numbers: colour-name histograms inside and in the ring, mean and spread of RGB,
# mean hue (as a saturation-weighted unit vector), saturation and value, ring mean RGB, the
# outline numbers, and the model's predicted IoU.
N_FEATURES = 2 * N_COLOURS + 3 + 3 + 4 + 3 + N_OUTLINE + 1


def work_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) at which masks of an image of (height, width) are described: the longest side at
    most MAX_SIDE."""
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB at `work_size` (area averaging)."""
    h, w = work_size(*image.shape[:2])
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def region_features(
    image: np.ndarray, masks: np.ndarray, scores: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """What K masks look like: (K, N_FEATURES) numbers and (K, 4, CROP, CROP) crops of each
    mask and the pixels around it (`_outline`).

    image: (h, w, 3) uint8 RGB; masks: (K, h, w) bool, each non-empty; scores: (K,) the model's
    predicted IoU of each mask."""
    h, w = image.shape[:2]
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise ValueError(f"masks must be (K, {h}, {w}) for a {h}x{w} image, got {masks.shape}")
    k = len(masks)
    inside = masks.reshape(k, -1).astype(np.float32)
    area = inside.sum(1, keepdims=True)
    if (area == 0).any():
        raise ValueError("region_features takes non-empty masks")
    pixels = image.reshape(-1, 3).astype(np.float32) / 255
    hue, sat, value = (c.reshape(-1) for c in hsv(image))
    names = np.eye(N_COLOURS, dtype=np.float32)[colour_indices_hsv(hue, sat, value)]
    angle = np.deg2rad(hue)
    colours = np.stack([np.cos(angle) * sat, np.sin(angle) * sat, sat, value], 1)
    per_pixel = np.concatenate([names, pixels, pixels**2, colours.astype(np.float32)], 1)
    kernel = np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)
    rings = np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)
    rings &= ~masks
    ring = rings.reshape(k, -1).astype(np.float32)
    empty_ring = ring.sum(1) == 0
    ring[empty_ring] = inside[empty_ring]  # a mask filling the image: its ring is itself
    mean_in = inside @ per_pixel / area
    mean_ring = ring @ per_pixel / ring.sum(1, keepdims=True)
    rgb = mean_in[:, N_COLOURS : N_COLOURS + 3]
    spread = np.sqrt(np.maximum(mean_in[:, N_COLOURS + 3 : N_COLOURS + 6] - rgb**2, 0))
    outlines = [_outline(m, image) for m in masks]
    shape = np.array([numbers for numbers, _ in outlines], np.float32).reshape(k, N_OUTLINE - 1)
    numbers = np.concatenate(
        [
            mean_in[:, :N_COLOURS],
            mean_ring[:, :N_COLOURS],
            rgb,
            spread,
            mean_in[:, N_COLOURS + 6 :],
            mean_ring[:, N_COLOURS : N_COLOURS + 3],
            np.log(area / (h * w)),
            shape,
            np.asarray(scores, np.float32).reshape(k, 1),
        ],
        1,
    )
    crops = np.stack([crop for _, crop in outlines]) if k else np.zeros((0, 4, CROP, CROP))
    return torch.from_numpy(numbers.astype(np.float32)), torch.from_numpy(crops.astype(np.float32))


def _outline(mask: np.ndarray, image: np.ndarray) -> tuple[list[float], np.ndarray]:
    """A mask's outline numbers and its (4, CROP, CROP) crop.

    The numbers: log aspect ratio and fill of its bounding box, connected components (/5,
    capped), and of its largest outline: solidity (area over convex hull area), circularity
    (4 pi area over perimeter squared), fill and log aspect of the smallest rotated rectangle
    around it, and the corners of its simplified polygon (/10). The crop: the bounding box
    centred in a square, the mask and the image's pixels (0-1 RGB) there, averaged down to
    CROP a side."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bh, bw = y1 - y0, x1 - x0
    as_bytes = mask.astype(np.uint8)
    components = cv2.connectedComponents(as_bytes, connectivity=8)[0] - 1
    contours, _ = cv2.findContours(as_bytes, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    area = max(float(cv2.contourArea(contour)), 1.0)
    hull = max(float(cv2.contourArea(cv2.convexHull(contour))), 1.0)
    perimeter = max(float(cv2.arcLength(contour, True)), 1.0)
    (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
    long_side, short_side = max(rw, rh, 1.0), max(min(rw, rh), 1.0)
    corners = len(cv2.approxPolyDP(contour, 0.04 * perimeter, True))
    numbers = [
        float(np.log(bw / bh)),
        float(len(ys) / (bh * bw)),
        min(components, 5) / 5,
        min(area / hull, 1.0),
        min(4 * np.pi * area / perimeter**2, 1.0),
        min(area / (long_side * short_side), 1.0),
        float(np.log(long_side / short_side)),
        min(corners, 20) / 10,
    ]
    side = max(bh, bw)
    top, left = y0 - (side - bh) // 2, x0 - (side - bw) // 2
    square = np.zeros((4, side, side), np.float32)
    h, w = mask.shape
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + side, h), min(left + side, w)
    window = (slice(sy0 - top, sy1 - top), slice(sx0 - left, sx1 - left))
    square[0][window] = mask[sy0:sy1, sx0:sx1]
    square[1:, window[0], window[1]] = image[sy0:sy1, sx0:sx1].transpose(2, 0, 1) / 255
    return numbers, F.adaptive_avg_pool2d(torch.from_numpy(square), CROP).numpy()


def polar_spectrum(crops: torch.Tensor) -> torch.Tensor:
    """(K, N_POLAR) numbers about the shape of each crop's mask (channel 0 of `region_features`'
    crops) that do not change when the mask turns: the mask is sampled on a polar grid about
    its centroid (ANGLES rays, RADII steps out to the crop's corners), and what is kept is
    the size of the Fourier terms along the angle: of each ray's extent (harmonics 1-16, over
    the mean; a disc has none, an ellipse the 2nd, a five-pointed star the 5th), of each
    radius's ring (the first RING_TERMS, over the mask's total), and the mean extent."""
    mask = crops[:, :1].float()
    side = mask.shape[-1]
    axis = (torch.arange(side, dtype=mask.dtype, device=mask.device) + 0.5) / side * 2 - 1
    weight = mask[:, 0].sum((1, 2)).clamp(min=1e-6)
    cy = (mask[:, 0] * axis[:, None]).sum((1, 2)) / weight
    cx = (mask[:, 0] * axis[None, :]).sum((1, 2)) / weight
    angle = torch.arange(ANGLES, dtype=mask.dtype, device=mask.device) * (2 * torch.pi / ANGLES)
    radius = (torch.arange(RADII, dtype=mask.dtype, device=mask.device) + 0.5) / RADII * 2**0.5
    x = cx[:, None, None] + radius[None, :, None] * torch.cos(angle)[None, None, :]
    y = cy[:, None, None] + radius[None, :, None] * torch.sin(angle)[None, None, :]
    polar = F.grid_sample(mask, torch.stack([x, y], -1), align_corners=False)[:, 0]
    extent = torch.fft.rfft(polar.mean(1), dim=-1).abs()  # (K, ANGLES // 2 + 1)
    rings = torch.fft.rfft(polar, dim=-1).abs()[:, :, :RING_TERMS]  # (K, RADII, RING_TERMS)
    rings = rings / rings[:, :, :1].sum(1, keepdim=True).clamp(min=1e-6)
    mean = extent[:, :1]
    return torch.cat([extent[:, 1:] / mean.clamp(min=1e-6), rings.flatten(1), mean / ANGLES], 1)


def silhouettes(crops: torch.Tensor) -> torch.Tensor:
    """(K, len(SILHOUETTE_SIGMAS), CROP, CROP): how near each pixel of a crop (`region_features`)
    is in colour to its mask's own colour, for the pixels within SILHOUETTE_REACH of the mask.
    A proposed mask's outline is rough where the image's colours are exact. For each
    silhouette, the mask's colour is its mean moved twice toward the mask's pixels nearest it:
    the soft silhouette of a rough mask over a plain object is still the object's; the sharp
    one is only where the mask is close (else it marks the pixels whose colour blends the
    object's and what the mask took in around it, at the object's edges); a striped mask's
    colour is its commoner stripe's, not the blend."""
    mask, rgb = crops[:, :1].float(), crops[:, 1:4].float()
    reach = 2 * SILHOUETTE_REACH + 1
    near = F.max_pool2d(mask, reach, stride=1, padding=SILHOUETTE_REACH)
    in_mask = torch.where(mask > 0, mask.log(), -torch.inf).flatten(1)  # (K, CROP²)

    def distance(colour: torch.Tensor, sigma: float) -> torch.Tensor:  # (K, 1, CROP, CROP)
        return ((rgb - colour) ** 2).sum(1, keepdim=True) / sigma**2

    def mean(log_weight: torch.Tensor) -> torch.Tensor:  # (K, 3, 1, 1), weights in log space
        weight = log_weight.softmax(1)[:, None]  # so that far colours do not underflow to 0
        return (rgb.flatten(2) * weight).sum(2)[..., None, None]

    out, start = [], mean(in_mask)
    for sigma in SILHOUETTE_SIGMAS:
        colour = start
        for _ in range(2):
            colour = mean(in_mask - distance(colour, sigma).flatten(1) / 2)
        out.append(torch.exp(-distance(colour, sigma)) * near)
    return torch.cat(out, 1)


class ShapeInputs(NamedTuple):
    """What `TextGrounder` reads of K crops (`region_features`) beside their numbers."""

    pictures: torch.Tensor  # (K, 4 + len(SILHOUETTE_SIGMAS), CROP, CROP): crops, silhouettes
    spectra: torch.Tensor  # (K, 2, N_POLAR): `polar_spectrum` of the mask, of the soft silhouette


def shape_inputs(crops: torch.Tensor) -> ShapeInputs:
    """K crops' `silhouettes` beside them and the polar spectra of their masks and soft
    silhouettes. Turning or flipping the crops turns the pictures with them and leaves the
    spectra as they are."""
    colour_shapes = silhouettes(crops)
    spectra = torch.stack([polar_spectrum(crops), polar_spectrum(colour_shapes)], 1)
    return ShapeInputs(torch.cat([crops, colour_shapes], 1), spectra)


# Attribute classes: the colour name and the shape of the object a mask covers, or "none"
# (`TextGrounder.attributes`), and the colour and shape a phrase names, or "unnamed"
# (`TextGrounder.text_attributes`); the last class of each is the "none"/"unnamed" one.
SHAPE_CLASSES = (*SHAPES, "group")
N_ATTRIBUTES = (N_COLOURS + 1) + (len(SHAPE_CLASSES) + 1)
# where each attribute's classes lie in the attribute heads' outputs: colour, then shape
ATTRIBUTE_PARTS = (slice(0, N_COLOURS + 1), slice(N_COLOURS + 1, N_ATTRIBUTES))


class TextGrounder(nn.Module):
    """Scores masks against phrases: (P, text_dim) text vectors and K masks' `region_features`
    -> (P, K) scores, higher for the mask the phrase names.

    A score is the dot product of the phrase's and the mask's embeddings, plus how likely the
    mask is to have the colour and the shape the phrase names: for each class, the chance
    the phrase names it (`text_attributes`) times the log-chance the mask has it
    (`attributes`), weighted by the learned `attribute_scale`. A phrase that names no colour
    (or no shape) adds nothing for it."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, text_dim: int, width: int = 128) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.text = nn.Sequential(
            nn.Linear(text_dim, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        self.numbers = nn.Sequential(nn.Linear(N_FEATURES, width), nn.GELU())
        self.outline = nn.Sequential(  # of the crops and their silhouettes
            nn.Conv2d(4 + len(SILHOUETTE_SIGMAS), 16, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (CROP // 8) ** 2, width),
            nn.GELU(),
        )
        self.polar = nn.Sequential(
            nn.Linear(N_POLAR, width), nn.GELU(), nn.Linear(width, width), nn.GELU()
        )
        self.silhouette_polar = nn.Sequential(  # of the soft silhouette
            nn.Linear(N_POLAR, width), nn.GELU(), nn.Linear(width, width), nn.GELU()
        )
        self.fuse = nn.Sequential(nn.Linear(4 * width, width), nn.GELU(), nn.Linear(width, width))
        self.scale = nn.Parameter(torch.tensor(width**-0.5))
        self.attributes = nn.Linear(width, N_ATTRIBUTES)  # of a mask's embedding
        self.text_attributes = nn.Linear(width, N_ATTRIBUTES)  # of a phrase's embedding
        self.attribute_scale = nn.Parameter(torch.tensor(1.0))
        # the training set's per-feature mean and spread, which `regions` normalises by
        self.register_buffer("feature_mean", torch.zeros(N_FEATURES))
        self.register_buffer("feature_std", torch.ones(N_FEATURES))

    def regions(self, numbers: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """(K, width) embeddings of K masks' `region_features`."""
        return self.describe(numbers, shape_inputs(crops))

    def describe(self, numbers: torch.Tensor, shapes: ShapeInputs) -> torch.Tensor:
        """`regions` from the masks' numbers and their `shape_inputs` (which training works
        out once for every proposal, not at every step)."""
        x = (numbers - self.feature_mean) / self.feature_std
        parts = [
            self.numbers(x),
            self.outline(shapes.pictures),
            self.polar(shapes.spectra[:, 0]),
            self.silhouette_polar(shapes.spectra[:, 1]),
        ]
        return self.fuse(torch.cat(parts, -1))

    def score(self, phrases: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """(P, K) scores of P phrase embeddings (`text`) against K `regions`."""
        named = self.text_attributes(phrases)
        has = self.attributes(regions)
        likely = torch.zeros(len(phrases), len(regions), device=phrases.device)
        for part in ATTRIBUTE_PARTS:
            chance = named[:, part].softmax(-1)[:, :-1]  # the "unnamed" class adds nothing
            likely = likely + chance @ has[:, part].log_softmax(-1)[:, :-1].T
        return phrases @ regions.T * self.scale + self.attribute_scale * likely

    def forward(
        self, texts: torch.Tensor, numbers: torch.Tensor, crops: torch.Tensor
    ) -> torch.Tensor:
        return self.score(self.text(texts), self.regions(numbers, crops))

"""Text prompts in training: which targets of a step get a phrase, and its encoder vector.

A target can be prompted by text only when its image names it unambiguously: synthetic
scenes name their objects (`samkit.data.phrases`), dataset samples carry their category
names (`FittedSample.phrases`). Of those, each gets text with chance `config.text_prob`,
and then starts without a point (the text alone) with chance `config.text_only_prob`.

With `config.text_from_crops` (a CLIP encoder), the SAM paper's training: every target is
eligible, and its vector is CLIP's image embedding of its crop, the mask's bounding box
widened by CROP_MARGIN of its size on each side, cut from the image (the background kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import Scene
from ..data.phrases import scene_phrases
from ..text import encode_cached, get_text_encoder
from .config import TrainConfig
from .sources import FittedSample

NONE, WITH_POINT, ALONE = 0, 1, 2  # TextPrompts.mode of a target


@dataclass(frozen=True)
class TextPrompts:
    vectors: torch.Tensor  # (B, D) text-encoder vectors (zeros where mode is NONE)
    mode: torch.Tensor  # (B,) NONE, WITH_POINT or ALONE


def candidate_phrases(scene: Scene | FittedSample, generator: torch.Generator) -> list[list[str]]:
    """The phrases naming each mask of `scene` (an empty list: none)."""
    if isinstance(scene, FittedSample):
        return [list(p) for p in scene.phrases] or [[] for _ in scene.masks]
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    out: list[list[str]] = [[] for _ in scene.objects]
    for phrase in scene_phrases(scene, np.random.default_rng(seed)):
        out[phrase.target].append(phrase.text)
    return out


def _draw_modes(
    n: int, generator: torch.Generator, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """For n targets: whether each gets text (chance `text_prob`), and whether that text
    comes without a point (chance `text_only_prob`)."""
    use = torch.rand(n, generator=generator) < config.text_prob
    alone = torch.rand(n, generator=generator) < config.text_only_prob
    return use, alone


def choose_text(
    scene: Scene | FittedSample,
    picked: Sequence[int],
    generator: torch.Generator,
    config: TrainConfig,
) -> TextPrompts:
    """Text prompts for the masks `picked` from `scene` (indices into its masks)."""
    if config.text_from_crops:
        return _crop_prompts(scene, picked, generator, config)
    phrases = candidate_phrases(scene, generator)
    n = len(picked)
    use, alone = _draw_modes(n, generator, config)
    which = torch.randint(1 << 30, (n,), generator=generator)
    texts, mode = [], torch.full((n,), NONE)
    for row, index in enumerate(picked):
        options = phrases[index]
        if use[row] and options:
            texts.append(options[int(which[row]) % len(options)])
            mode[row] = ALONE if alone[row] else WITH_POINT
    encoder = get_text_encoder(config.text_encoder)
    vectors = torch.zeros(n, encoder.dim)
    if texts:
        vectors[mode != NONE] = encode_cached(config.text_encoder, texts)
    return TextPrompts(vectors, mode)


CROP_MARGIN = 0.1  # of the box's width and height, added on each side


def object_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (h, w, 3) part of `image` around the non-empty `mask`: its bounding box widened by
    CROP_MARGIN on each side, within the image. `mask` may be padded beyond the image at the
    bottom and right (`FittedSample`), never holding pixels there."""
    ys, xs = np.nonzero(mask[: image.shape[0], : image.shape[1]])
    if ys.size == 0:
        raise ValueError("an empty mask has no crop")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = round(CROP_MARGIN * (y1 - y0)), round(CROP_MARGIN * (x1 - x0))
    h, w = image.shape[:2]
    return image[max(0, y0 - dy) : min(h, y1 + dy), max(0, x0 - dx) : min(w, x1 + dx)]


def _crop_prompts(
    scene: Scene | FittedSample,
    picked: Sequence[int],
    generator: torch.Generator,
    config: TrainConfig,
) -> TextPrompts:
    """Each picked mask gets, with chance `config.text_prob`, CLIP's image embedding of its
    crop as its text vector (with or without a first point, as for phrases)."""
    from ..text.clip import ClipTextEncoder

    encoder = get_text_encoder(config.text_encoder)
    if not isinstance(encoder, ClipTextEncoder):
        raise ValueError(f"text_from_crops needs a CLIP encoder; {config.text_encoder!r} is not")
    n = len(picked)
    use, alone = _draw_modes(n, generator, config)
    masks = scene.masks  # a Scene stacks its objects' masks anew on each access
    rows = [row for row, index in enumerate(picked) if use[row] and masks[index].any()]
    vectors, mode = torch.zeros(n, encoder.dim), torch.full((n,), NONE)
    if rows:
        crops = [object_crop(scene.image, masks[picked[row]]) for row in rows]
        vectors[rows] = encoder.encode_crops(crops)
        mode[rows] = torch.where(alone[rows], ALONE, WITH_POINT)
    return TextPrompts(vectors, mode)

"""Text prompts in training: which targets of a step get a phrase, and its encoder vector.

A target can be prompted by text only when its image names it unambiguously: synthetic
scenes name their objects (`samkit.data.phrases`), dataset samples carry their category
names (`FittedSample.phrases`). Of those, each gets text with chance `config.text_prob`,
and then starts without a point (the text alone) with chance `config.text_only_prob`.
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


def choose_text(
    scene: Scene | FittedSample,
    picked: Sequence[int],
    generator: torch.Generator,
    config: TrainConfig,
) -> TextPrompts:
    """Text prompts for the masks `picked` from `scene` (indices into its masks)."""
    phrases = candidate_phrases(scene, generator)
    n = len(picked)
    use = torch.rand(n, generator=generator) < config.text_prob
    alone = torch.rand(n, generator=generator) < config.text_only_prob
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

"""Shared fixtures: a small seeded model and predictor, and a test image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor
from samkit.build import build_samkit_tiny, seeded_init_
from samkit.modeling import Sam


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sam() -> Sam:
    return seeded_init_(build_samkit_tiny(), seed=0)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    img[30:90, 40:110] = (250, 20, 20)
    return img


@pytest.fixture
def predictor(tiny_sam: Sam, image: np.ndarray) -> SamPredictor:
    p = SamPredictor(tiny_sam)
    p.set_image(image)
    return p

"""The click protocol: where the first and the corrective clicks go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.eval.clicks import click_ious, first_click, next_click
from samkit.modeling import Sam


def test_first_click_is_the_most_interior_point() -> None:
    target = np.zeros((40, 60), dtype=bool)
    target[10:31, 5:26] = True  # a 21x21 square centred on (15, 20)
    assert first_click(target) == (15, 20)


def test_image_border_counts_as_boundary() -> None:
    target = np.zeros((40, 40), dtype=bool)
    target[:21, :21] = True  # in the top-left corner: its centre, not the corner pixel
    assert first_click(target) == (10, 10)


def test_next_click_goes_to_the_largest_error_region() -> None:
    target = np.zeros((50, 50), dtype=bool)
    target[5:45, 5:45] = True
    pred = target.copy()
    pred[10:20, 10:20] = False  # a 10x10 miss: false negative
    pred[0:3, 0:3] = True  # a small spill: false positive
    assert next_click(pred, target) == (14, 14, 1) or next_click(pred, target)[:2] in {
        (14, 15),
        (15, 14),
        (15, 15),
    }
    spill = target.copy()
    spill[45:50, 10:40] = True  # a 5x30 false positive at the bottom border
    x, y, label = next_click(spill, target)  # type: ignore[misc]
    assert label == 0 and 45 <= y <= 49 and 10 <= x < 40
    assert next_click(target, target) is None


def test_click_ious_shape_and_range(tiny_sam: Sam) -> None:
    torch.set_num_threads(1)  # 2 OpenMP threads crawl on a busy 2-core machine
    image = np.full((256, 256, 3), 30, dtype=np.uint8)
    targets = np.zeros((2, 256, 256), dtype=bool)
    targets[0, 40:120, 40:120] = True
    targets[1, 150:200, 60:220] = True
    ious = click_ious(tiny_sam, image, targets, n_clicks=3)
    assert ious.shape == (2, 3)
    assert ((ious >= 0) & (ious <= 1)).all()


def test_interior_point_needs_a_region() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        first_click(np.zeros((4, 4), dtype=bool))

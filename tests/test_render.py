"""Pictures of results: overlays, every mask coloured, images side by side."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.io.render import render_masks, render_overlay, side_by_side


def test_render_overlay_tints_only_the_mask() -> None:
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:15, 5:15] = True
    out = render_overlay(image, mask)
    assert (out[~mask] == 100).all() and (out[mask] != 100).any(axis=-1).all()


def test_render_masks_paints_small_masks_over_large_ones() -> None:
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    big = np.zeros((20, 20), dtype=bool)
    big[2:18, 2:18] = True
    small = np.zeros((20, 20), dtype=bool)
    small[8:12, 8:12] = True
    out = render_masks(image, np.stack([small, big]), alpha=1.0)
    alone = render_masks(image, small[None], alpha=1.0)
    assert (out[10, 10] == alone[10, 10]).all()  # small on top, whatever the input order
    assert (out[4, 4] != out[10, 10]).any() and (out[0, 0] == 0).all()
    assert (
        render_masks(image, np.stack([small, big])) == render_masks(image, np.stack([small, big]))
    ).all()


def test_render_masks_of_no_masks_is_the_image() -> None:
    image = np.full((8, 8, 3), 7, dtype=np.uint8)
    assert (render_masks(image, np.zeros((0, 8, 8), bool)) == image).all()


def test_render_masks_rejects_masks_of_another_size() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        render_masks(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 4, 4), bool))


def test_side_by_side_places_images_in_a_row_with_titles() -> None:
    a = np.full((10, 12, 3), 50, dtype=np.uint8)
    b = np.ones((6, 4), dtype=bool)
    out = side_by_side([a, b], ["a", "b"], gap=2)
    assert out.shape == (20 + 10, 12 + 2 + 4, 3)
    assert (out[20:, :12] == 50).all() and (out[20:26, 14:] == 255).all()
    assert (out[:20] < 255).any()  # the titles are drawn
    with pytest.raises(ValueError, match="2 titles for 1 images"):
        side_by_side([a], ["a", "b"])

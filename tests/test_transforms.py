"""ResizeLongestSide: sizes, rounding, coordinates, and the torch versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from samkit.transforms import ResizeLongestSide


@pytest.mark.parametrize(
    ("hw", "target", "expected"),
    [
        ((200, 300), 256, (171, 256)),
        ((300, 200), 256, (256, 171)),
        ((256, 256), 256, (256, 256)),
        ((1, 1000), 1024, (1, 1024)),
        ((3, 2), 1024, (1024, 683)),
        ((1000, 1500), 1024, (683, 1024)),
    ],
)
def test_preprocess_shape_rounds_half_up(
    hw: tuple[int, int], target: int, expected: tuple[int, int]
) -> None:
    assert ResizeLongestSide.get_preprocess_shape(*hw, target) == expected


def test_apply_image_uses_pil_bilinear() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 20:] = 200
    out = ResizeLongestSide(80).apply_image(image)
    assert out.shape == (40, 80, 3) and out.dtype == np.uint8 and out.flags.writeable
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 200 and 0 < out[0, 40, 0] < 200


@given(
    h=st.integers(1, 2000),
    w=st.integers(1, 2000),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
)
def test_coords_scale_with_image(h: int, w: int, x: float, y: float) -> None:
    t = ResizeLongestSide(1024)
    nh, nw = t.get_preprocess_shape(h, w, 1024)
    out = t.apply_coords(np.array([[x * w, y * h]]), (h, w))
    np.testing.assert_allclose(out, [[x * nw, y * nh]], rtol=1e-9, atol=1e-9)
    torch_out = t.apply_coords_torch(torch.tensor([[x * w, y * h]]), (h, w))
    np.testing.assert_allclose(torch_out.numpy(), out, rtol=1e-5, atol=1e-3)


def test_boxes_and_no_mutation() -> None:
    t = ResizeLongestSide(256)
    boxes = np.array([[0.0, 0.0, 300.0, 200.0]])
    out = t.apply_boxes(boxes, (200, 300))
    np.testing.assert_allclose(out, [[0, 0, 256, 171]])
    assert boxes[0, 2] == 300.0
    out_t = t.apply_boxes_torch(torch.tensor(boxes), (200, 300))
    np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-6)


def test_apply_image_torch_shape() -> None:
    out = ResizeLongestSide(64).apply_image_torch(torch.rand(2, 3, 30, 90))
    assert out.shape == (2, 3, 21, 64)

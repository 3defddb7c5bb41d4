"""Tests for samkit.masks' encodings: COCO RLE (samkit.rle, which it re-exports) and boxes.

References: pycocotools for the compressed RLE, and small brute-force implementations
written here (run lengths, boxes) for the rest; hand-derived numbers where stated.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from samkit import masks as M

# ---------------------------------------------------------------- helpers


@st.composite
def masks_2d(draw: Any, max_side: int = 40) -> np.ndarray:
    """(H, W) bool masks, 1..max_side a side: random, all-false, all-true, blocky, sparse."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "zeros", "ones", "blocks", "sparse"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "zeros":
        return np.zeros((h, w), dtype=bool)
    if kind == "ones":
        return np.ones((h, w), dtype=bool)
    if kind == "blocks":  # long runs, so counts > 31 need several characters
        small = rng.random((3, 3)) < 0.5
        return np.kron(small, np.ones((h // 3 + 1, w // 3 + 1), dtype=bool))[:h, :w]
    p = 0.02 if kind == "sparse" else rng.random()
    return rng.random((h, w)) < p


def ref_counts(mask: np.ndarray) -> list[int]:
    """Run lengths over the column-major pixels, zeros first: the plain definition."""
    counts, current, run = [], False, 0
    for v in mask.T.reshape(-1).tolist():
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def pycoco_counts(mask: np.ndarray) -> bytes:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


# ---------------------------------------------------------------- RLE


@settings(max_examples=150, deadline=None)
@given(masks_2d())
def test_mask_to_rle_matches_definition_and_round_trips(mask: np.ndarray) -> None:
    (rle,) = M.mask_to_rle(torch.as_tensor(mask)[None])
    assert rle == {"size": list(mask.shape), "counts": ref_counts(mask)}
    assert all(type(c) is int for c in rle["counts"])
    back = M.rle_to_mask(rle)
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)
    assert M.area_from_rle(rle) == int(mask.sum())


@settings(max_examples=150, deadline=None)
@given(masks_2d())
def test_coco_rle_is_byte_identical_to_pycocotools_and_decodes(mask: np.ndarray) -> None:
    expected = pycoco_counts(mask)
    enc = M.encode_coco_rle(mask)
    assert enc == {"size": list(mask.shape), "counts": expected.decode()}
    (rle,) = M.mask_to_rle(torch.as_tensor(mask)[None])
    assert M.coco_rle_from_uncompressed(rle) == enc
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # counts as bytes
    np.testing.assert_array_equal(M.decode_coco_rle(ref), mask)
    np.testing.assert_array_equal(M.decode_coco_rle(enc), mask)
    np.testing.assert_array_equal(M.decode_coco_rle(rle), mask)


def test_mask_to_rle_batch_hand_checked() -> None:
    # Column-major order: column 0 top to bottom, then column 1.
    masks = torch.tensor(
        [
            [[0, 1], [0, 1], [1, 1]],  # pixels 0,0,1,1,1,1 -> [2, 4]
            [[1, 0], [0, 0], [0, 1]],  # pixels 1,0,0,0,0,1 -> [0, 1, 4, 1]
            [[0, 0], [0, 0], [0, 0]],  # -> [6]
        ],
        dtype=torch.bool,
    )
    assert [r["counts"] for r in M.mask_to_rle(masks)] == [[2, 4], [0, 1, 4, 1], [6]]
    assert [M.area_from_rle(r) for r in M.mask_to_rle(masks)] == [4, 2, 0]
    assert M.mask_to_rle(masks[:0]) == []


def test_coco_rle_long_runs_and_large_mask() -> None:
    # Counts needing several 5-bit groups and negative deltas (pycocotools as reference).
    rng = np.random.default_rng(0)
    mask = np.zeros((300, 500), dtype=bool)
    mask[40:260, 100:450] = True
    mask[rng.random(mask.shape) < 0.001] ^= True
    assert M.encode_coco_rle(mask)["counts"] == pycoco_counts(mask).decode()
    np.testing.assert_array_equal(M.decode_coco_rle(M.encode_coco_rle(mask)), mask)


def test_empty_size_rle_like_pycocotools() -> None:
    mask = np.zeros((0, 5), dtype=bool)
    assert M.encode_coco_rle(mask)["counts"] == pycoco_counts(mask).decode() == "0"
    assert M.mask_to_rle(torch.zeros(1, 0, 5, dtype=torch.bool))[0]["counts"] == [0]
    assert M.decode_coco_rle({"size": [0, 5], "counts": "0"}).shape == (0, 5)


_GOOD = {"size": [2, 3], "counts": [1, 2, 3]}


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("not a dict", "must be a dict"),
        ({"counts": "06"}, "missing"),
        ({"size": [2, 3]}, "missing"),
        ({"size": [2], "counts": [6]}, "'size'"),
        ({"size": [2, -3], "counts": [6]}, "'size'"),
        ({"size": [2.0, 3], "counts": [6]}, "'size'"),
        ({"size": "23", "counts": [6]}, "'size'"),
        ({"size": [2, 3], "counts": [1, 2, 4]}, "add up to 7"),
        ({"size": [2, 3], "counts": [1, 2]}, "add up to 3"),
        ({"size": [2, 3], "counts": [7, -1]}, "non-negative"),
        ({"size": [2, 3], "counts": [1.0, 5]}, "list of ints"),
        ({"size": [2, 3], "counts": [True, 5]}, "list of ints"),
        ({"size": [2, 3], "counts": None}, "list of ints"),
        ({"size": [2, 3], "counts": {"a": 1}}, "list of ints"),
        ({"size": [2, 3], "counts": "6 "}, "' '"),  # space is outside '0'..'o'
        ({"size": [2, 3], "counts": "6~"}, "'~'"),
        ({"size": [2, 3], "counts": "6é"}, "ASCII"),
        ({"size": [2, 3], "counts": b"6\xff"}, "'0'..'o'"),
        ({"size": [2, 3], "counts": "P"}, "truncated"),  # 'P' = 48 + 0x20: more follows
        ({"size": [2, 3], "counts": "O"}, "non-negative"),  # 'O' = 48 + 31: the count -1
        ({"size": [2, 3], "counts": "7"}, "add up to 7"),
        ({"size": [2, 3], "counts": ""}, "add up to 0"),
        ({"size": [2, 3], "counts": "P" * 20 + "0"}, "too large"),
        ({"size": [2, 3], "counts": "000" + "P" * 9 + "1"}, "too large"),
    ],
)
def test_malformed_rle_raises_value_error(rle: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        M.decode_coco_rle(rle)


def test_malformed_uncompressed_rle_rejected_by_all_readers() -> None:
    # Column-major pixels 0, 1, 1, 0, 0, 0 -> columns [0, 1], [1, 0], [0, 0].
    assert M.rle_to_mask(_GOOD).tolist() == [[False, True, False], [True, False, False]]
    bad = {"size": [2, 3], "counts": [1, 2, 4]}
    for fn in (M.rle_to_mask, M.coco_rle_from_uncompressed, M.decode_coco_rle):
        with pytest.raises(ValueError, match="add up to 7"):
            fn(bad)


def test_mask_to_rle_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        M.mask_to_rle(torch.zeros(4, 4, dtype=torch.bool))


# ---------------------------------------------------------------- boxes


@settings(max_examples=60, deadline=None)
@given(st.lists(masks_2d(max_side=12), min_size=1, max_size=4))
def test_batched_mask_to_box_matches_nonzero(masks: list[np.ndarray]) -> None:
    h = max(m.shape[0] for m in masks)
    w = max(m.shape[1] for m in masks)
    batch = np.zeros((len(masks), h, w), dtype=bool)
    for i, m in enumerate(masks):
        batch[i, : m.shape[0], : m.shape[1]] = m
    expected = []
    for m in batch:
        ys, xs = np.nonzero(m)
        expected.append([xs.min(), ys.min(), xs.max(), ys.max()] if len(xs) else [0, 0, 0, 0])
    boxes = M.batched_mask_to_box(torch.as_tensor(batch))
    assert boxes.dtype == torch.int64
    assert boxes.tolist() == expected


def test_batched_mask_to_box_shapes_empty_and_dtype() -> None:
    masks = torch.zeros(2, 3, 5, 6, dtype=torch.bool)
    masks[0, 1, 2, 3] = True  # single pixel
    masks[1, 2] = True  # full
    boxes = M.batched_mask_to_box(masks)
    assert boxes.shape == (2, 3, 4)
    assert boxes[0, 1].tolist() == [3, 2, 3, 2]
    assert boxes[1, 2].tolist() == [0, 0, 5, 4]
    assert boxes[0, 0].tolist() == [0, 0, 0, 0]  # empty
    assert M.batched_mask_to_box(masks[0, 1]).tolist() == [3, 2, 3, 2]  # (H, W) -> (4,)
    assert M.batched_mask_to_box(masks[:0]).shape == (0, 3, 4)
    as_f64 = M.batched_mask_to_box(masks.double())
    assert as_f64.dtype == torch.float64
    assert torch.equal(as_f64, boxes.double())


def test_box_helpers_hand_checked() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 4.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    assert M.box_area(a).tolist() == [4.0, 4.0]
    iou = M.box_iou(a, b.double())
    assert iou.shape == (2, 3) and iou.dtype == torch.float64
    # [1,1,3,3] vs [0,0,2,2]: inter 1, union 7; vs [2,0,4,2]: inter 1, union 7.
    assert iou[:, :2].tolist() == [[1.0, 0.0], [1 / 7, 1 / 7]]
    assert iou[:, 2].tolist() == [0.0, 0.0]  # zero-area box
    assert torch.isnan(M.box_iou(b[2:], b[2:])).all()  # two zero-area boxes: 0 / 0 as torchvision
    xywh = M.box_xyxy_to_xywh(torch.tensor([3, 4, 10, 20]))
    assert xywh.tolist() == [3, 4, 7, 16]
    batch = M.box_xyxy_to_xywh(a)
    assert batch.dtype == torch.float64 and batch.tolist() == [[0, 0, 2, 2], [1, 1, 2, 2]]
    assert a[1].tolist() == [1.0, 1.0, 3.0, 3.0]  # input untouched


def test_area_from_masks() -> None:
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[0, :2, :3] = True
    assert M.area_from_masks(masks).tolist() == [6, 0]
    assert M.area_from_masks(masks).dtype == torch.int64

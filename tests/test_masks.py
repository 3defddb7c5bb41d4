"""Tests for samkit.masks: NMS, stability, mask IoU, grids and crops, devices, small regions,
polygons (RLE and boxes: test_masks_encoding.py).

References: small brute-force implementations written here (NMS) and hand-derived numbers
where stated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samkit import masks as M

# ---------------------------------------------------------------- helpers


def disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


# ---------------------------------------------------------------- NMS


def ref_batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, thr: float) -> list:
    """Brute force: rank by (-score, index); each kept box drops the later boxes of its
    category with IoU > thr. IoU in float32, with torchvision's formula."""
    f = np.float32
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    removed: set[int] = set()
    keep = []
    for rank, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            if idxs[j] != idxs[i]:
                continue
            x0, y0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x1, y1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = f(max(f(0), f(x1 - x0))) * f(max(f(0), f(y1 - y0)))
            area_i = f(boxes[i, 2] - boxes[i, 0]) * f(boxes[i, 3] - boxes[i, 1])
            area_j = f(boxes[j, 2] - boxes[j, 0]) * f(boxes[j, 3] - boxes[j, 1])
            with np.errstate(invalid="ignore"):
                iou = f(inter / f(f(area_i + area_j) - inter))
            if iou > thr:
                removed.add(j)
    return keep


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 30),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.95]),
    st.booleans(),
)
def test_batched_nms_matches_brute_force(n: int, seed: int, thr: float, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 20, (n, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 12, (n, 2))], axis=1).astype(np.float32)
    scores = (rng.integers(0, 3, n) if ties else rng.random(n)).astype(np.float32)
    idxs = rng.integers(0, 3, n)
    keep = M.batched_nms(
        torch.as_tensor(boxes), torch.as_tensor(scores), torch.as_tensor(idxs), thr
    )
    assert keep.dtype == torch.int64
    assert keep.tolist() == ref_batched_nms(boxes, scores, idxs, thr)


def test_batched_nms_hand_checked() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0: best
            [1.0, 0.0, 11.0, 10.0],  # 1: IoU 90/110 = 0.82 with 0 -> dropped
            [0.0, 0.0, 10.0, 10.0],  # 2: same box as 0 but another category -> kept
            [20.0, 20.0, 30.0, 30.0],  # 3: alone -> kept
            [5.0, 0.0, 15.0, 10.0],  # 4: IoU 50/150 = 0.33 with 0 -> kept
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.1, 0.5, 0.5])  # 3 and 4 tie: lower index first
    idxs = torch.tensor([0, 0, 1, 0, 0])
    assert M.batched_nms(boxes, scores, idxs, 0.7).tolist() == [0, 3, 4, 2]
    assert M.batched_nms(boxes, scores, idxs, 0.3).tolist() == [0, 3, 2]
    assert M.batched_nms(boxes[:0], scores[:0], idxs[:0], 0.5).tolist() == []


# ---------------------------------------------------------------- stability


def test_stability_score_hand_computed() -> None:
    logits = torch.tensor(
        [
            [[3.0, 0.5, -0.5], [-2.0, 1.5, 0.0]],  # > 1: {3, 1.5} = 2; > -1: 5 -> 0.4
            [[-3.0, -3.0, -3.0], [-3.0, -3.0, 2.0]],  # > 1: 1; > -1: 1 -> 1.0
            [[-3.0, -3.0, -3.0], [-3.0, -3.0, -3.0]],  # 0 / 0 -> NaN
        ]
    )
    score = M.calculate_stability_score(logits, 0.0, 1.0)
    assert score.dtype == torch.float32 and score.shape == (3,)
    assert score[:2].tolist() == [pytest.approx(0.4), 1.0]
    assert torch.isnan(score[2])
    # Threshold and offset both matter (strict >): 0.5 +/- 1 -> {3} / {3, .5, 1.5, 0};
    # 0 +/- 0.25 -> {3, .5, 1.5} / {3, .5, 1.5, 0}.
    assert M.calculate_stability_score(logits[:1], 0.5, 1.0).item() == 0.25
    assert M.calculate_stability_score(logits[:1], 0.0, 0.25).item() == pytest.approx(3 / 4)


# ---------------------------------------------------------------- mask IoU


def ref_iou(a: np.ndarray, b: np.ndarray) -> float:
    """One pair of (H, W) masks, from the sets of their pixels."""
    pa, pb = set(zip(*np.nonzero(a), strict=True)), set(zip(*np.nonzero(b), strict=True))
    return 1.0 if not pa | pb else len(pa & pb) / len(pa | pb)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_mask_iou_matches_pixel_sets(n: int, h: int, w: int, seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((2, n, h, w)) < density
    want = [ref_iou(x, y) for x, y in zip(a, b, strict=True)]
    got_np = M.mask_iou(a, b)
    got_t = M.mask_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert got_np.dtype == np.float64 and got_np.shape == (n,)
    assert got_t.dtype == torch.float32 and got_t.shape == (n,)
    assert got_np.tolist() == pytest.approx(want, abs=1e-12)
    assert got_t.tolist() == pytest.approx(want, abs=1e-6)
    assert M.mask_iou(b, a).tolist() == got_np.tolist()  # symmetric
    assert M.mask_iou(a, a).tolist() == [1.0] * n


def test_mask_iou_broadcasts_and_checks_its_inputs() -> None:
    candidates = np.zeros((2, 3, 4, 4), dtype=bool)
    candidates[:, 1, :2] = True  # the top half
    targets = np.ones((2, 4, 4), dtype=bool)
    assert M.mask_iou(candidates, targets[:, None]).tolist() == [[0.0, 0.5, 0.0]] * 2
    with pytest.raises(TypeError, match=r"bool masks; got torch.float32.*logits > 0"):
        M.mask_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2) > 0)
    with pytest.raises(TypeError, match="two tensors or two arrays"):
        M.mask_iou(torch.zeros(1, 2, 2) > 0, np.zeros((1, 2, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        M.mask_iou(np.zeros(4, dtype=bool), np.zeros(4, dtype=bool))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    k=st.integers(1, 5),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_mask_iou_matrix_is_every_pair_of_mask_iou(
    n: int, k: int, h: int, w: int, seed: int, density: float
) -> None:
    rng = np.random.default_rng(seed)
    a = torch.from_numpy(rng.random((n, h, w)) < density)
    b = torch.from_numpy(rng.random((k, h, w)) < rng.random())
    got = M.mask_iou_matrix(a, b)
    assert got.dtype == torch.float32 and got.shape == (n, k)
    assert got.tolist() == M.mask_iou(a[:, None], b[None]).tolist()
    got_np = M.mask_iou_matrix(a.numpy(), b.numpy())  # arrays: float64, as mask_iou's
    assert got_np.dtype == np.float64
    assert got_np.tolist() == M.mask_iou(a.numpy()[:, None], b.numpy()[None]).tolist()


def test_mask_iou_matrix_checks_its_inputs() -> None:
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    with pytest.raises(TypeError, match="bool masks"):
        M.mask_iou_matrix(masks.float(), masks)
    with pytest.raises(ValueError, match=r"\(N, H, W\) and \(K, H, W\)"):
        M.mask_iou_matrix(masks, masks[:, :2])
    with pytest.raises(TypeError, match="two tensors or two arrays"):
        M.mask_iou_matrix(masks, masks.numpy())


# ---------------------------------------------------------------- grids and crops


def test_point_grid_values() -> None:
    np.testing.assert_array_equal(M.build_point_grid(1), [[0.5, 0.5]])
    np.testing.assert_allclose(
        M.build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    )
    g = M.build_point_grid(4)
    assert g.shape == (16, 2) and g.dtype == np.float64
    np.testing.assert_allclose(g[:4, 0], [0.125, 0.375, 0.625, 0.875])  # X fastest
    np.testing.assert_allclose(g[::4, 1], [0.125, 0.375, 0.625, 0.875])
    grids = M.build_all_layer_point_grids(32, 2, 2)
    assert [len(p) for p in grids] == [1024, 256, 64]
    np.testing.assert_array_equal(grids[1], M.build_point_grid(16))
    assert [len(p) for p in M.build_all_layer_point_grids(20, 1, 3)] == [400, 36]  # int(20/3)


def test_generate_crop_boxes_by_hand() -> None:
    # Image H=1500, W=2250, overlap_ratio 512/1500, short side 1500. Layer 0 is the image.
    # Layer 1 (2x2): overlap = int(512/1500 * 1500 * 2/2) = 512;
    #   crop_w = ceil((512 * 1 + 2250) / 2) = 1381, crop_h = ceil((512 + 1500) / 2) = 1006;
    #   x0 = 0, 1381 - 512 = 869; y0 = 0, 1006 - 512 = 494; x1 = min(x0 + 1381, 2250),
    #   y1 = min(y0 + 1006, 1500); X outer, Y inner.
    # Layer 2 (4x4): overlap = int(512/1500 * 1500 * 2/4) = 256;
    #   crop_w = ceil((256 * 3 + 2250) / 4) = ceil(754.5) = 755, crop_h = ceil(2268 / 4) = 567;
    #   x0 = 0, 499, 998, 1497 (step 755 - 256); y0 = 0, 311, 622, 933 (step 567 - 256);
    #   the last column is clipped 1497 + 755 = 2252 -> 2250.
    ratio = 512 / 1500
    layer1 = [[0, 0, 1381, 1006], [0, 494, 1381, 1500], [869, 0, 2250, 1006]]
    layer1 += [[869, 494, 2250, 1500]]
    boxes, layers = M.generate_crop_boxes((1500, 2250), 1, ratio)
    assert boxes == [[0, 0, 2250, 1500], *layer1]
    assert layers == [0, 1, 1, 1, 1]
    boxes, layers = M.generate_crop_boxes((1500, 2250), 2, ratio)
    x1s = {0: 755, 499: 1254, 998: 1753, 1497: 2250}
    y1s = {0: 567, 311: 878, 622: 1189, 933: 1500}
    layer2 = [[x0, y0, x1s[x0], y1s[y0]] for x0 in x1s for y0 in y1s]
    assert boxes == [[0, 0, 2250, 1500], *layer1, *layer2]
    assert layers == [0] + [1] * 4 + [2] * 16
    assert M.generate_crop_boxes((1500, 2250), 0, ratio) == ([[0, 0, 2250, 1500]], [0])


def test_generate_crop_boxes_float_truncation() -> None:
    # 0.29 * 100 * (2 / 2) is 28.999999999999996 in floating point, so the overlap is 28,
    # not 29 (official computes it this way): crop_w = ceil((28 + 200) / 2) = 114,
    # crop_h = ceil((28 + 100) / 2) = 64, x0 = 0, 86, y0 = 0, 36.
    boxes, _ = M.generate_crop_boxes((100, 200), 1, 0.29)
    assert boxes[1:] == [[0, 0, 114, 64], [0, 36, 114, 100], [86, 0, 200, 64], [86, 36, 200, 100]]


def test_uncrop_and_edge_filter() -> None:
    crop = [100, 50, 600, 450]
    boxes = torch.tensor([[0, 0, 50, 50], [480, 100, 500, 200], [200, 100, 300, 200]])
    assert M.uncrop_boxes_xyxy(boxes, crop)[0].tolist() == [100, 50, 150, 100]
    assert M.uncrop_boxes_xyxy(boxes[None].double(), crop).dtype == torch.float64
    pts = torch.tensor([[1.5, 2.5]], dtype=torch.float64)
    assert M.uncrop_points(pts, crop).tolist() == [[101.5, 52.5]]
    # Near the crop's left/top edge (x=100, y=50); near its right edge (600 < 700); inside.
    assert M.is_box_near_crop_edge(boxes, crop, [0, 0, 700, 500]).tolist() == [True, True, False]
    # A crop edge that is also the image edge does not count.
    near = M.is_box_near_crop_edge(boxes, [0, 0, 500, 400], [0, 0, 500, 400])
    assert near.tolist() == [False, False, False]
    masks = torch.ones(2, 400, 500, dtype=torch.bool)
    full = M.uncrop_masks(masks, crop, 500, 700)
    assert full.shape == (2, 500, 700) and full.dtype == torch.bool
    assert full[:, 50:450, 100:600].all() and full.sum() == masks.sum()
    assert M.uncrop_masks(masks, [0, 0, 500, 400], 400, 500) is masks


def test_batch_iterator() -> None:
    a, b = list(range(7)), np.arange(7) * 2
    batches = list(M.batch_iterator(3, a, b))
    assert [x for x, _ in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    np.testing.assert_array_equal(batches[2][1], [12])
    assert list(M.batch_iterator(3, [])) == []
    with pytest.raises(ValueError, match="equal length"):
        list(M.batch_iterator(2, a, b[:3]))
    with pytest.raises(ValueError, match="at least one"):
        list(M.batch_iterator(2))
    with pytest.raises(ValueError, match="batch_size"):
        list(M.batch_iterator(0, a))


# ---------------------------------------------------------------- device and dtype


def _device_dtype_checks(device: str) -> None:
    boxes = torch.tensor([[1.0, 2.0, 5.0, 7.0]], dtype=torch.float64, device=device)
    for out in (
        M.uncrop_boxes_xyxy(boxes, [3, 4, 9, 9]),
        M.uncrop_points(boxes[:, :2], [3, 4, 9, 9]),
        M.box_xyxy_to_xywh(boxes),
        M.box_area(boxes),
        M.box_iou(boxes, boxes),
    ):
        assert out.device.type == device and out.dtype == torch.float64
    masks = torch.zeros(2, 6, 7, dtype=torch.float64, device=device)
    mbox = M.batched_mask_to_box(masks)
    assert mbox.device.type == device and mbox.dtype == torch.float64
    bbox = M.batched_mask_to_box(masks > 0)
    assert bbox.device.type == device and bbox.dtype == torch.int64
    stab = M.calculate_stability_score(masks, 0.0, 1.0)
    assert stab.device.type == device and stab.dtype == torch.float32
    iou = M.mask_iou(masks > 0, masks[:1] > 0)
    assert iou.device.type == device and iou.dtype == torch.float32 and iou.shape == (2,)
    assert M.is_box_near_crop_edge(boxes, [0, 0, 9, 9], [0, 0, 20, 20]).device.type == device
    assert M.uncrop_masks(masks > 0, [1, 1, 8, 7], 10, 10).device.type == device


def test_follows_device_and_dtype_meta() -> None:
    _device_dtype_checks("meta")  # no data: any tensor made on the CPU would fail here


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_follows_device_cuda() -> None:
    _device_dtype_checks("cuda")
    masks = torch.rand(3, 20, 30, device="cuda") > 0.5
    assert M.mask_to_rle(masks) == M.mask_to_rle(masks.cpu())
    boxes = torch.rand(50, 4, device="cuda").sort(-1).values[:, [0, 1, 2, 3]] * 10
    boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
    scores, idxs = torch.rand(50, device="cuda"), torch.zeros(50, dtype=torch.long)
    keep = M.batched_nms(boxes, scores, idxs.cuda(), 0.5)
    assert keep.device.type == "cuda"
    assert keep.tolist() == M.batched_nms(boxes.cpu(), scores.cpu(), idxs, 0.5).tolist()


# ---------------------------------------------------------------- small-region cleanup


def _drawn_mask() -> np.ndarray:
    mask = np.zeros((60, 60), dtype=bool)
    mask[5:45, 5:45] = True  # big square, area 1600
    mask[10:12, 10:12] = False  # small hole, area 4
    mask[20:30, 20:30] = False  # big hole, area 100
    mask[50:53, 50:53] = True  # small island, area 9
    return mask


def test_remove_small_regions_holes_and_islands() -> None:
    mask = _drawn_mask()
    filled, changed = M.remove_small_regions(mask, 20, "holes")
    assert changed and filled.dtype == bool
    expected = mask.copy()
    expected[10:12, 10:12] = True
    np.testing.assert_array_equal(filled, expected)
    cleaned, changed = M.remove_small_regions(mask, 20, "islands")
    expected = mask.copy()
    expected[50:53, 50:53] = False
    assert changed
    np.testing.assert_array_equal(cleaned, expected)
    same, changed = M.remove_small_regions(mask, 4, "holes")  # nothing below 4 pixels
    assert not changed and same is mask


def test_remove_small_regions_keeps_largest_and_uses_8_connectivity() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:5, 2:5] = True  # 9 pixels
    mask[5:8, 5:8] = True  # 9 pixels, touching the first only at a corner
    mask[20:22, 20:22] = True  # 4 pixels
    # 8-connected, the two squares are one 18-pixel island, kept at threshold 10.
    out, changed = M.remove_small_regions(mask, 10, "islands")
    assert changed and out.sum() == 18 and not out[20:22, 20:22].any()
    # Every island below the threshold: only the largest stays.
    out, changed = M.remove_small_regions(mask, 100, "islands")
    assert changed and out.sum() == 18 and out[2:8, 2:8].sum() == 18
    with pytest.raises(ValueError, match="'holes' or 'islands'"):
        M.remove_small_regions(mask, 10, "both")


# ---------------------------------------------------------------- polygons


def _blob_cases() -> dict[str, np.ndarray]:
    h, w = 60, 80
    rect = np.zeros((h, w), dtype=bool)
    rect[10:30, 20:55] = True
    ring = disc(h, w, 40, 30, 20) & ~disc(h, w, 40, 30, 8)
    holes = rect.copy()
    holes[14:18, 25:29] = False
    holes[20:25, 40:50] = False
    edge = np.zeros((h, w), dtype=bool)
    edge[:, :10] = True
    return {
        "disc": disc(h, w, 30, 25, 12),
        "rectangle": rect,
        "ring": ring,
        "two components": disc(h, w, 15, 15, 8) | disc(h, w, 60, 40, 10),
        "island in hole": ring | disc(h, w, 40, 30, 4),
        "two holes": holes,
        "touches border": edge,
        "full": np.ones((h, w), dtype=bool),
    }


@pytest.mark.parametrize("name", list(_blob_cases()))
def test_polygons_round_trip_exactly(name: str) -> None:
    mask = _blob_cases()[name]
    polygons = M.mask_to_polygons(mask)
    for p in polygons:
        assert p.exterior.ndim == 2 and p.exterior.shape[1] == 2 and len(p.exterior) >= 3
        assert p.exterior.dtype == np.float64
    back = M.polygons_to_mask(polygons, *mask.shape)
    assert back.dtype == bool
    np.testing.assert_array_equal(back, mask)


def test_polygon_structure() -> None:
    cases = _blob_cases()
    (ring,) = M.mask_to_polygons(cases["ring"])
    assert len(ring.holes) == 1 and len(ring.holes[0]) >= 3
    assert sorted(len(p.holes) for p in M.mask_to_polygons(cases["island in hole"])) == [0, 1]
    assert len(M.mask_to_polygons(cases["two components"])) == 2
    (rect,) = M.mask_to_polygons(cases["rectangle"])  # pixel-centre corners
    assert sorted(map(tuple, rect.exterior.tolist())) == [(20, 10), (20, 29), (54, 10), (54, 29)]
    assert M.mask_to_polygons(np.zeros((5, 5), dtype=bool)) == []
    dot = np.zeros((5, 5), dtype=bool)
    dot[2, 2] = dot[0, 0] = dot[0, 1] = True  # a 1-point and a 2-point ring: both dropped
    assert M.mask_to_polygons(dot) == []


def test_polygons_tolerance_simplifies() -> None:
    mask = disc(80, 80, 40, 40, 30)
    (exact,) = M.mask_to_polygons(mask)
    (simple,) = M.mask_to_polygons(mask, tolerance=1.5)
    assert 3 <= len(simple.exterior) < len(exact.exterior) // 2
    back = M.polygons_to_mask([simple], 80, 80)
    assert (back & mask).sum() / (back | mask).sum() > 0.95


def test_polygons_to_mask_rounds_float_vertices() -> None:
    square = M.Polygon(exterior=np.array([[1.2, 0.8], [3.4, 1.1], [2.9, 2.6], [0.6, 3.0]]))
    out = M.polygons_to_mask([square], 5, 5)
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:4, 1:4] = True  # rounded to the square (1, 1)-(3, 3)
    np.testing.assert_array_equal(out, expected)
    outside = M.Polygon(exterior=np.array([[10.0, 10.0], [12.0, 10.0], [12.0, 12.0]]))
    assert not M.polygons_to_mask([outside], 5, 5).any()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_polygons_round_trip_random_blobs(seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((60, 80)).astype(np.float32)
    mask = cv2.GaussianBlur(noise, (0, 0), 4) > 0.5
    back = M.polygons_to_mask(M.mask_to_polygons(mask), 60, 80)
    union = (back | mask).sum()
    assert union == 0 or (back & mask).sum() / union > 0.9

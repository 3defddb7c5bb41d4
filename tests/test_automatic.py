"""SamAutomaticMaskGenerator: records, output modes, options, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from samkit import SamAutomaticMaskGenerator, SamPredictor, automatic
from samkit.masks import decode_coco_rle, rle_to_mask
from samkit.modeling import Sam

LOOSE = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
KEYS = {
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "point_coords",
    "stability_score",
    "crop_box",
}


def test_records_and_output_modes_agree(tiny_sam: Sam, image: np.ndarray) -> None:
    binary = SamAutomaticMaskGenerator(tiny_sam, **LOOSE).generate(image)
    coco = SamAutomaticMaskGenerator(tiny_sam, output_mode="coco_rle", **LOOSE).generate(image)
    raw = SamAutomaticMaskGenerator(tiny_sam, output_mode="uncompressed_rle", **LOOSE).generate(
        image
    )
    assert binary and len(binary) == len(coco) == len(raw)
    for b, c, r in zip(binary, coco, raw, strict=True):
        assert set(b) == KEYS
        mask = b["segmentation"]
        assert mask.shape == (120, 160) and mask.dtype == np.bool_
        assert np.array_equal(decode_coco_rle(c["segmentation"]), mask)
        assert np.array_equal(rle_to_mask(r["segmentation"]), mask)
        assert b["area"] == int(mask.sum())
        x, y, w, h = b["bbox"]
        ys, xs = np.nonzero(mask)
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert isinstance(b["predicted_iou"], float) and isinstance(b["stability_score"], float)
        assert b["crop_box"] == [0, 0, 160, 120]
        assert len(b["point_coords"]) == 1 and len(b["point_coords"][0]) == 2


def test_chunking_does_not_change_results(
    tiny_sam: Sam, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = SamAutomaticMaskGenerator(tiny_sam, output_mode="coco_rle", **LOOSE).generate(image)
    monkeypatch.setattr(automatic, "CHUNK_BYTES", 1)  # one mask at a time
    chunked = SamAutomaticMaskGenerator(tiny_sam, output_mode="coco_rle", **LOOSE).generate(image)
    assert whole == chunked


def test_filters_remove_masks(tiny_sam: Sam, image: np.ndarray) -> None:
    loose = SamAutomaticMaskGenerator(tiny_sam, **LOOSE).generate(image)
    strict = SamAutomaticMaskGenerator(
        tiny_sam, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.9
    ).generate(image)
    assert len(strict) < len(loose)
    assert all(r["stability_score"] >= 0.9 for r in strict)


def test_crops_and_small_region_cleanup_run(tiny_sam: Sam, image: np.ndarray) -> None:
    records = SamAutomaticMaskGenerator(
        tiny_sam, crop_n_layers=1, min_mask_region_area=30, **LOOSE
    ).generate(image)
    assert records
    assert {tuple(r["crop_box"]) for r in records} <= {
        (0, 0, 160, 120),
        (0, 0, 93, 70),
        (67, 0, 93, 70),
        (0, 50, 93, 70),
        (67, 50, 93, 70),
    }


def test_custom_point_grid(tiny_sam: Sam, image: np.ndarray) -> None:
    grid = [np.array([[0.5, 0.5], [0.25, 0.25]])]
    records = SamAutomaticMaskGenerator(
        tiny_sam,
        points_per_side=None,
        point_grids=grid,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
    ).generate(image)
    assert {tuple(r["point_coords"][0]) for r in records} <= {(80.0, 60.0), (40.0, 30.0)}


def test_nothing_survives_gives_empty_list(tiny_sam: Sam, image: np.ndarray) -> None:
    gen = SamAutomaticMaskGenerator(
        tiny_sam, points_per_side=4, pred_iou_thresh=1e9, crop_n_layers=1
    )
    assert gen.generate(image) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points_per_side": None}, "exactly one"),
        ({"point_grids": [np.zeros((1, 2))]}, "exactly one"),
        ({"output_mode": "polygons"}, "output_mode"),
        ({"points_per_batch": 0}, "points_per_batch"),
        (
            {"points_per_side": None, "point_grids": [np.zeros((1, 2))], "crop_n_layers": 1},
            "one grid per crop layer",
        ),
    ],
)
def test_bad_arguments(tiny_sam: Sam, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamAutomaticMaskGenerator(tiny_sam, **kwargs)


def test_accepts_paths(tiny_sam: Sam, image: np.ndarray, tmp_path) -> None:
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "x.png")
    gen = SamAutomaticMaskGenerator(tiny_sam, output_mode="coco_rle", **LOOSE)
    assert gen.generate(tmp_path / "x.png") == gen.generate(image)


def test_generate_batch_equals_generate(tiny_sam: Sam, image: np.ndarray) -> None:
    images = [image, np.ascontiguousarray(image[:, ::-1]), image[:60, :80].copy()]
    generator = SamAutomaticMaskGenerator(tiny_sam, crop_n_layers=1, **LOOSE)
    batched = generator.generate_batch(images, batch_size=2)
    assert len(batched) == 3
    for img, got in zip(images, batched, strict=True):
        want = SamAutomaticMaskGenerator(tiny_sam, crop_n_layers=1, **LOOSE).generate(img)
        assert got and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert (g["segmentation"] != w["segmentation"]).mean() < 1e-3
            assert g["bbox"] == w["bbox"] or (g["segmentation"] != w["segmentation"]).any()


def test_generate_with_a_precomputed_embedding(tiny_sam: Sam, image: np.ndarray) -> None:
    generator = SamAutomaticMaskGenerator(tiny_sam, **LOOSE)
    (embedding,) = SamPredictor(tiny_sam).set_images([image])
    got = generator.generate(image, embedding=embedding)
    want = generator.generate(image)
    assert got and len(got) == len(want)
    assert all(
        (g["segmentation"] == w["segmentation"]).all() for g, w in zip(got, want, strict=True)
    )
    with pytest.raises(ValueError, match=r"embedding is of a 120x160 \(HxW\) image"):
        generator.generate(image[:60], embedding=embedding)

"""samkit.eval.boxes and `samkit boxes2masks`: a detector's boxes to masks, and mask AP.

The dataset is made here: flat-coloured rectangles and discs on a grey ground, so the right
masks (and so AP 1.0) are known."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit.cli import main
from samkit.eval.boxes import (
    ap_markdown,
    check_detections,
    ground_truth_detections,
    mask_ap,
    segment_detections,
)
from samkit.masks import decode_coco_rle, encode_coco_rle

SIZE = 96  # px, square images


def _objects(index: int) -> list[tuple[int, np.ndarray]]:
    """(category_id, mask) of image `index`: a rectangle (category 1) and a disc (category 2)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    x0, y0 = 8 + 6 * index, 10 + 4 * index
    rect = (xx >= x0) & (xx < x0 + 30) & (yy >= y0) & (yy < y0 + 22)
    cx, cy = 66 - 4 * index, 62 - 3 * index
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 14**2
    return [(1, rect), (2, disc)]


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Any]:
    """A COCO file of 3 images (written to tmp_path/images/), its path, and the GT masks."""
    (tmp_path / "images").mkdir()
    images, annotations, masks = [], [], {}
    for i in range(3):
        image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
        for (category, mask), colour in zip(
            _objects(i), [(230, 40, 40), (40, 60, 220)], strict=True
        ):
            image[mask] = colour
            rle = encode_coco_rle(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                    "bbox": _bbox(mask),
                    "iscrowd": 0,
                }
            )
            masks[len(annotations)] = mask
        Image.fromarray(image).save(tmp_path / "images" / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": SIZE, "height": SIZE})
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "disc"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    return {"coco": coco, "path": path, "images": tmp_path / "images", "masks": masks}


def _gt_results(coco: dict[str, Any], shift: int = 0) -> list[dict[str, Any]]:
    """The ground-truth masks as results (score 1), each rolled `shift` px right and down."""
    results = []
    for ann in coco["annotations"]:
        mask = np.roll(decode_coco_rle(ann["segmentation"]), (shift, shift), axis=(0, 1))
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "score": 1.0,
                "segmentation": encode_coco_rle(mask),
            }
        )
    return results


# -- mask_ap: pycocotools' COCOeval ----------------------------------------------------------
def test_ground_truth_masks_score_ap_one(dataset: dict[str, Any]) -> None:
    ap = mask_ap(dataset["path"], _gt_results(dataset["coco"]))
    assert ap["AP"] == ap["AP50"] == ap["AP75"] == pytest.approx(1.0)
    assert ap["APs"] == pytest.approx(1.0)  # every object is under 32² px
    assert math.isnan(ap["APm"]) and math.isnan(ap["APl"])  # no objects of those sizes
    table = ap_markdown(ap)
    assert "| AP | AP50 |" in table and "| 100.0 | 100.0 | 100.0 | 100.0 | n/a | n/a |" in table


def test_worse_results_score_lower(dataset: dict[str, Any]) -> None:
    coco = dataset["coco"]
    shifted = mask_ap(coco, _gt_results(coco, shift=6))
    assert shifted["AP"] < 0.9 and shifted["AP75"] < 1.0
    wrong_category = [{**r, "category_id": 3 - r["category_id"]} for r in _gt_results(coco)]
    assert mask_ap(coco, wrong_category)["AP"] == pytest.approx(0.0)
    missing_half = _gt_results(coco)[::2]  # every image's disc missed
    assert mask_ap(coco, missing_half)["AP"] < 0.9


def test_mask_ap_leaves_its_inputs_alone_and_fills_missing_fields(dataset: dict[str, Any]) -> None:
    coco = dataset["coco"]
    for ann in coco["annotations"]:
        del ann["area"], ann["iscrowd"]  # a file from another tool
    before = json.dumps(coco)
    results = _gt_results(coco)
    assert mask_ap(coco, results)["AP"] == pytest.approx(1.0)
    assert json.dumps(coco) == before and "area" not in results[0]


def test_mask_ap_errors(dataset: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="no results"):
        mask_ap(dataset["coco"], [])
    with pytest.raises(ValueError, match="missing key"):
        mask_ap({"images": []}, _gt_results(dataset["coco"]))
    unsegmented = [
        {k: v for k, v in r.items() if k != "segmentation"} for r in _gt_results(dataset["coco"])
    ]
    with pytest.raises(ValueError, match=r"results\[0\]: missing key.*'segmentation'"):
        mask_ap(dataset["coco"], unsegmented)
    with pytest.raises(ValueError, match="'image_id' 9 is not an image"):
        mask_ap(dataset["coco"], [{**_gt_results(dataset["coco"])[0], "image_id": 9}])
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "pycocotools.mask"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    with pytest.raises(RuntimeError, match="pip install pycocotools"):
        mask_ap(dataset["coco"], _gt_results(dataset["coco"]))


# -- detections ------------------------------------------------------------------------------
def test_check_detections_rejects_bad_records() -> None:
    good = {"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5, "extra": "kept"}
    assert check_detections([good], [1]) == [{**good, "bbox": [1.0, 2.0, 3.0, 4.0]}]
    cases = [
        ({"detections": []}, "expected a list"),
        ([{**good, "image_id": 7}], "'image_id' 7 is not an image"),
        ([{**good, "bbox": [0, 0, -1, 4]}], "negative size"),
        ([{**good, "bbox": [0, 0, 4]}], "expected 4"),
        ([{k: v for k, v in good.items() if k != "score"}], "missing key.*'score'"),
        ([{**good, "score": "high"}], "'score'"),
    ]
    for detections, message in cases:
        with pytest.raises(ValueError, match=message):
            check_detections(detections, [1])


def test_ground_truth_detections_skip_crowds() -> None:
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1},
    ]
    assert ground_truth_detections(anns) == [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}
    ]
    with pytest.raises(ValueError, match="no 'bbox'"):
        ground_truth_detections([{"id": 3, "image_id": 1, "category_id": 1}])


# -- segment_detections: SAM prompted with the boxes -----------------------------------------
def _check_results(results: list[dict[str, Any]], detections: list[dict[str, Any]]) -> None:
    assert len(results) == len(detections)
    for result, det in zip(results, detections, strict=True):
        assert {k: result[k] for k in det} == det  # the detection, in order, unchanged
        rle = result["segmentation"]
        assert rle["size"] == [SIZE, SIZE] and isinstance(rle["counts"], str)
        mask = decode_coco_rle(rle)
        x, y, w, h = (int(v) for v in det["bbox"])
        inside = mask[max(y - 2, 0) : y + h + 2, max(x - 2, 0) : x + w + 2].sum()
        assert mask.sum() > 0 and inside >= 0.9 * mask.sum()  # the mask lies in its box


def test_segment_detections_with_the_bundled_model(dataset: dict[str, Any]) -> None:
    coco = dataset["coco"]
    detections = ground_truth_detections(coco["annotations"])
    detections.reverse()  # results keep the detections' order, whatever the images' order
    images = [(img["id"], dataset["images"] / img["file_name"]) for img in coco["images"]]
    model = samkit.load("samkit_default")
    results = segment_detections(model, images, detections, batch_size=1)
    _check_results(results, detections)
    assert segment_detections(model, images, detections) == results  # batching changes nothing
    ious = []
    for ann, result in zip(reversed(coco["annotations"]), results, strict=True):
        truth, mask = dataset["masks"][ann["id"]], decode_coco_rle(result["segmentation"])
        ious.append((truth & mask).sum() / (truth | mask).sum())
    assert np.mean(ious) > 0.9, ious  # flat shapes in their boxes: the bundled model's home
    assert mask_ap(coco, results)["AP"] > 0.9


def test_segment_detections_rejects_unknown_images(tiny_sam: Any) -> None:
    det = {"image_id": 5, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1.0}
    with pytest.raises(ValueError, match="'image_id' 5 is not an image"):
        segment_detections(tiny_sam, [(1, "a.png")], [det])
    with pytest.raises(ValueError, match="batch_size"):
        segment_detections(tiny_sam, [(5, "a.png")], [det], batch_size=0)


# -- samkit boxes2masks ----------------------------------------------------------------------
def test_cli_end_to_end(
    dataset: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    coco = dataset["coco"]
    detections = [{**d, "score": 0.9} for d in ground_truth_detections(coco["annotations"])][:4]
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(detections))
    out = tmp_path / "out" / "results.json"
    argv = ["boxes2masks", str(dataset["path"]), str(dataset["images"]), "--out", str(out)]
    assert main([*argv, "--detections", str(dets)]) == 0  # samkit_default
    assert "4 masks of 2 images" in capsys.readouterr().out
    _check_results(json.loads(out.read_text()), detections)

    assert main([*argv, "--score"]) == 0  # the COCO file's own boxes, scored against its masks
    printed = capsys.readouterr().out
    assert "6 masks of 3 images" in printed and "| AP | AP50 | AP75 | APs | APm | APl |" in printed
    assert [r["score"] for r in json.loads(out.read_text())] == [1.0] * 6


def test_cli_checks_inputs_before_loading_the_model(
    dataset: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(samkit, "load", no_model)
    coco, images = str(dataset["path"]), str(dataset["images"])
    out = ["--out", str(tmp_path / "r.json")]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps([{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    (dataset["images"] / "im1.png").unlink()
    cases = [
        ([str(tmp_path / "none.json"), images, *out], "no such file"),
        ([coco, images, "--detections", str(tmp_path / "none.json"), *out], "no such file"),
        ([coco, str(tmp_path / "none"), *out], "no such folder"),
        ([coco, images, *out, "--device", "tpu:0"], "is not a device name"),
        ([coco, images, "--detections", str(bad_json), *out], "not valid JSON"),
        ([coco, images, "--detections", str(unknown), *out], "'image_id' 9 is not an image"),
        ([coco, images, "--detections", str(empty), "--score", *out], "no detections to score"),
        ([coco, images, *out], "im1.png does not exist"),
    ]
    for argv, message in cases:
        assert main(["boxes2masks", *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    Image.new("RGB", (SIZE + 1, SIZE)).save(dataset["images"] / "im1.png")
    assert main(["boxes2masks", coco, images, *out]) == 1
    assert "is 97x96 but" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()

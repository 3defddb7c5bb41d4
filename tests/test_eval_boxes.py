"""samkit.eval.boxes, `samkit boxes2masks` and `samkit eval boxes`: a detector's boxes to
masks, and mask AP (per LVIS frequency too).

The dataset is made here: flat-coloured rectangles and discs on a grey ground, so the right
masks (and so AP 1.0) are known."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit.cli import main
from samkit.eval.boxes import (
    AP_NAMES,
    IOU_THRESHOLDS,
    ap_markdown,
    check_detections,
    ground_truth_detections,
    mask_ap,
    score_masks,
    segment_detections,
)
from samkit.interrupt import Interrupted, raise_on_signal
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


# -- LVIS frequencies and the AP at each IoU threshold ---------------------------------------
def _lvis(coco: dict[str, Any]) -> dict[str, Any]:
    """`coco` with LVIS frequencies: rectangles frequent, discs rare, stars (none) common."""
    names = [(1, "rectangle", "f"), (2, "disc", "r"), (3, "star", "c")]
    return {**coco, "categories": [{"id": i, "name": n, "frequency": f} for i, n, f in names]}


def test_lvis_frequencies_split_the_ap(dataset: dict[str, Any]) -> None:
    coco = _lvis(dataset["coco"])
    rectangles_only = [r for r in _gt_results(coco) if r["category_id"] == 1]  # discs missed
    scored = score_masks(coco, rectangles_only)
    assert scored.stats["APf"] == pytest.approx(1.0) and scored.stats["APr"] == pytest.approx(0.0)
    assert math.isnan(scored.stats["APc"])  # no object of a common category
    assert scored.stats["AP"] == pytest.approx(0.5)  # the mean over the two scored categories
    assert scored.by_iou["APf"] == [1.0] * 10 and scored.by_iou["APr"] == [0.0] * 10
    assert all(math.isnan(v) for v in scored.by_iou["APc"])
    assert set(mask_ap(dataset["coco"], rectangles_only)) == set(AP_NAMES)  # plain COCO
    coco["categories"][0]["frequency"] = "x"
    with pytest.raises(ValueError, match=r"categories\[0\]: 'frequency' is LVIS's.*got 'x'"):
        mask_ap(coco, rectangles_only)


def test_ap_at_each_iou_threshold(dataset: dict[str, Any]) -> None:
    scored = score_masks(dataset["coco"], _gt_results(dataset["coco"], shift=2))
    curve = scored.by_iou["AP"]
    assert list(scored.by_iou) == ["AP"] and len(curve) == len(IOU_THRESHOLDS) == 10
    assert curve[0] == pytest.approx(1.0) and curve[-1] == pytest.approx(0.0)  # IoU 0.5..0.95
    assert all(a >= b for a, b in itertools.pairwise(curve))  # a stricter IoU, a lower AP
    assert np.mean(curve) == pytest.approx(scored.stats["AP"])  # AP is their mean
    assert (curve[0], curve[5]) == pytest.approx((scored.stats["AP50"], scored.stats["AP75"]))


def test_segment_detections_interrupted_says_how_far(
    dataset: dict[str, Any], tiny_sam: Any
) -> None:
    coco, encoded = dataset["coco"], []
    images = [(img["id"], dataset["images"] / img["file_name"]) for img in coco["images"]]
    detections = ground_truth_detections(coco["annotations"])

    def signal_on_the_second_image(*args: Any) -> None:  # a real SIGINT at a known point
        encoded.append(True)
        if len(encoded) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    hook = tiny_sam.image_encoder.register_forward_hook(signal_on_the_second_image)
    try:
        with pytest.raises(Interrupted, match="1 image segmented"), raise_on_signal():
            segment_detections(tiny_sam, images, detections, progress=True)
    finally:
        hook.remove()
    assert len(encoded) == 2


# -- samkit eval boxes -----------------------------------------------------------------------
def test_cli_eval_boxes_ground_truth_and_lvis(
    dataset: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "ev"
    argv = ["eval", "boxes", str(dataset["path"]), str(dataset["images"]), "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0  # samkit_default, the annotations' boxes
    printed = capsys.readouterr().out
    # Flat shapes in their own boxes: every mask has IoU > 0.95, so AP is 1 at every threshold.
    row = "| 100.0 | 100.0 | 100.0 | 100.0 | n/a | n/a |"
    assert "| AP | AP50 | AP75 | APs | APm | APl |\n" in printed and f"{row}\n" in printed
    assert "6 masks of 3 images; boxes: the annotations' own (an oracle detector)" in printed
    assert "APr" not in printed  # no LVIS frequencies in a plain COCO file
    files = ["ap.png", "results.csv", "results.json", "results.md"]
    assert sorted(p.name for p in out.iterdir()) == files
    assert (out / "results.md").read_text() == printed
    with open(out / "results.csv") as f:
        (values,) = list(csv.DictReader(f))
    assert (values["images"], values["masks"], values["AP"]) == ("3", "6", "1.0000")
    assert values["APm"] == "nan" and values["AP@0.95"] == "1.0000" and "APr" not in values
    results = json.loads((out / "results.json").read_text())
    _check_results(results, ground_truth_detections(dataset["coco"]["annotations"]))
    assert Image.open(out / "ap.png").size == (640, 420)

    lvis = tmp_path / "lvis.json"  # LVIS categories, and only the rectangles detected
    lvis.write_text(json.dumps(_lvis(dataset["coco"])))
    boxes = ground_truth_detections(dataset["coco"]["annotations"])
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([d for d in boxes if d["category_id"] == 1]))
    argv = ["eval", "boxes", str(lvis), str(dataset["images"]), "--detections", str(dets)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| AP | AP50 | AP75 | APs | APm | APl | APr | APc | APf |" in printed
    assert "| 50.0 | 50.0 | 50.0 | 50.0 | n/a | n/a | 0.0 | n/a | 100.0 |" in printed
    assert f"3 masks of 3 images; boxes: {dets}." in printed and "LVIS's rare" in printed
    with open(out / "results.csv") as f:
        (values,) = list(csv.DictReader(f))
    assert (values["APr"], values["APc"], values["APf"]) == ("0.0000", "nan", "1.0000")


def test_cli_eval_boxes_checks_inputs_before_loading_the_model(
    dataset: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(samkit, "load", no_model)
    coco, images, out = str(dataset["path"]), str(dataset["images"]), tmp_path / "ev"
    out.mkdir()
    (out / "results.md").write_text("an earlier run's")
    empty, bad_frequency = tmp_path / "empty.json", tmp_path / "lvis.json"
    empty.write_text("[]")
    lvis = _lvis(dataset["coco"])
    lvis["categories"][2]["frequency"] = "often"
    bad_frequency.write_text(json.dumps(lvis))
    cases = [
        ([str(tmp_path / "none.json"), images], "no such file (the COCO instances JSON)"),
        ([coco, str(tmp_path / "none")], "no such folder"),
        ([coco, images, "--detections", str(tmp_path / "none.json")], "no such file"),
        ([coco, images, "--detections", str(empty)], "there are no detections to score"),
        ([str(bad_frequency), images], "categories[2]: 'frequency' is LVIS's 'r', 'c' or 'f'"),
        ([coco, images, "--device", "tpu:0"], "is not a device name"),
    ]
    for argv, message in cases:
        assert main(["eval", "boxes", *argv, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert [p.name for p in out.iterdir()] == ["results.md"]
    assert (out / "results.md").read_text() == "an earlier run's"
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # as if it were not installed
    assert main(["eval", "boxes", coco, images, "--out", str(out)]) == 1
    assert "samkit eval boxes needs pycocotools: pip install" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["eval", "boxes", coco, images])

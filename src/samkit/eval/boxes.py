"""Instance segmentation from a detector's boxes: the SAM paper's zero-shot protocol (§7.3).

A detector's boxes (COCO results format: a list of {"image_id", "category_id", "bbox" XYWH,
"score"}) prompt SAM one box each, batched per image, single-mask output; each result is the
detection with its mask added as a compressed COCO RLE, ready for pycocotools' COCOeval with
iouType "segm". `mask_ap` scores such results with that library (an optional dependency:
`pip install 'samkit[eval]'`, or `pip install pycocotools`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..interrupt import Interrupted, images
from ..io import as_floats, as_int, read_json, require_keys
from ..modeling import Sam
from ..rle import encode_coco_rle

# COCOeval.stats[:6] for iouType "segm", in its order.
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def check_detections(
    detections: Any, image_ids: Iterable[int], *, where: str = "detections"
) -> list[dict[str, Any]]:
    """Check a COCO results list and return it with plain Python values.

    Every record needs `image_id` (one of `image_ids`), `category_id`, `bbox` (X, Y, W, H
    pixels, W and H >= 0) and a finite `score`; other keys are kept as they are. Raises
    ValueError naming the record and what is wrong.
    """
    if not isinstance(detections, list):
        raise ValueError(
            f"{where}: expected a list of detections (COCO results format); "
            f"got {type(detections).__name__}"
        )
    known = set(image_ids)
    checked = []
    for i, det in enumerate(detections):
        here = f"{where}[{i}]"
        require_keys(det, ("image_id", "category_id", "bbox", "score"), here)
        image_id = as_int(det["image_id"], f"{here} 'image_id'")
        if image_id not in known:
            raise ValueError(f"{here}: 'image_id' {image_id} is not an image of the COCO file")
        bbox = as_floats(det["bbox"], 4, f"{here} 'bbox'")
        if bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{here}: 'bbox' is [x, y, width, height]; got a negative size {bbox}")
        record = dict(det)
        record.update(
            image_id=image_id,
            category_id=as_int(det["category_id"], f"{here} 'category_id'"),
            bbox=bbox,
            score=as_floats(det["score"], 1, f"{here} 'score'")[0],
        )
        checked.append(record)
    return checked


def read_detections(path: str | os.PathLike[str], image_ids: Iterable[int]) -> list[dict[str, Any]]:
    """`check_detections` of a JSON file."""
    return check_detections(read_json(path), image_ids, where=os.fspath(path))


def ground_truth_detections(annotations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """COCO annotations' own boxes as detections of score 1: an oracle detector, what box
    prompting gives when the boxes are right. Crowd regions (iscrowd=1) are left out."""
    found = []
    for ann in annotations:
        if ann.get("iscrowd", 0):
            continue
        if "bbox" not in ann:
            raise ValueError(
                f"annotation {ann.get('id', '?')} has no 'bbox'; pass the detector's boxes instead"
            )
        found.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "score": 1.0,
            }
        )
    return found


def segment_detections(
    model: Sam,
    coco_images: Sequence[tuple[int, str | os.PathLike[str]]],
    detections: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Prompt SAM with every detection's box and return the detections with masks.

    coco_images: (image_id, image path) pairs; detections: COCO results records
    ({"image_id", "category_id", "bbox" [x, y, w, h] pixels, "score"}, see `check_detections`).
    Each image is encoded once and its boxes decoded `batch_size` at a time with
    `multimask_output=False`. Returns one record per detection, in the input order: the
    detection's fields plus "segmentation", a compressed COCO RLE {"size": [h, w],
    "counts": str}. Runs on the model's device. Interrupted (SIGINT, SIGTERM), raises
    `Interrupted` saying how many images were done.
    """
    from ..io.images import load_image
    from ..predictor import SamPredictor

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    detections = check_detections(list(detections), (i for i, _ in coco_images))
    by_image: dict[int, list[int]] = {}
    for index, det in enumerate(detections):
        by_image.setdefault(det["image_id"], []).append(index)
    paths = dict(coco_images)
    predictor = SamPredictor(model)
    results: list[dict[str, Any] | None] = [None] * len(detections)
    done = 0
    try:
        for image_id, indices in by_image.items():
            predictor.set_image(load_image(paths[image_id]))
            assert predictor.original_size is not None
            for start in range(0, len(indices), batch_size):
                batch = indices[start : start + batch_size]
                xywh = torch.tensor([detections[i]["bbox"] for i in batch], dtype=torch.float32)
                xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)  # (B, 4)
                boxes = predictor.transform.apply_boxes_torch(xyxy, predictor.original_size)
                masks, _, _ = predictor.predict_torch(
                    None, None, boxes=boxes.to(predictor.device), multimask_output=False
                )  # (B, 1, H, W) bool
                for i, mask in zip(batch, masks[:, 0].cpu().numpy(), strict=True):
                    results[i] = {**detections[i], "segmentation": encode_coco_rle(mask)}
            done += 1
    except Interrupted as stop:
        raise Interrupted(stop.signum, f"{images(done)} segmented") from None
    return [r for r in results if r is not None]


def mask_ap(
    ground_truth: str | os.PathLike[str] | Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    """Mask AP of `results` (COCO results with "segmentation") against a COCO instances file
    or dict, scored by pycocotools' COCOeval with iouType "segm".

    Returns {"AP", "AP50", "AP75", "APs", "APm", "APl"} (COCOeval.stats[:6], in 0..1); a size
    with no ground truth is NaN. Every image of the ground truth is scored, so the objects of
    an image without results count as missed. Ground-truth annotations without "iscrowd" or
    "area" (files from other tools) get 0 and their mask's pixel count.
    """
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise RuntimeError(
            "scoring mask AP needs pycocotools: pip install pycocotools (or 'samkit[eval]')"
        ) from None
    if not results:
        raise ValueError("no results to score: mask AP needs at least one detection")
    if isinstance(ground_truth, (str, os.PathLike)):
        data: dict[str, Any] = read_json(ground_truth)
    else:
        data = copy.deepcopy(dict(ground_truth))
    require_keys(data, ("images", "annotations"), "mask_ap: ground truth")
    data.setdefault("categories", [])
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, Mapping)}
    for i, result in enumerate(results):
        require_keys(result, ("image_id", "category_id", "score", "segmentation"), f"results[{i}]")
        if result["image_id"] not in image_ids:
            raise ValueError(
                f"results[{i}]: 'image_id' {result['image_id']!r} is not an image of the "
                "ground truth"
            )
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        for ann in gt.anns.values():  # COCOeval reads these; files from other tools may lack them
            ann.setdefault("iscrowd", 0)
            if "area" not in ann:
                ann["area"] = float(mask_utils.area(gt.annToRLE(ann)))
        dt = gt.loadRes([dict(copy.deepcopy(r)) for r in results])
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats[: len(AP_NAMES)], dtype=np.float64)
    return {
        name: (math.nan if v < 0 else float(v)) for name, v in zip(AP_NAMES, stats, strict=True)
    }


def ap_markdown(ap: Mapping[str, float]) -> str:
    """A one-row markdown table of `mask_ap`'s result, in percent."""
    cells = ["n/a" if math.isnan(ap[k]) else f"{100 * ap[k]:.1f}" for k in AP_NAMES]
    return (
        "| " + " | ".join(AP_NAMES) + " |\n"
        "|" + "---:|" * len(AP_NAMES) + "\n"
        "| " + " | ".join(cells) + " |\n"
    )

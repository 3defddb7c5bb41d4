"""Instance segmentation from a detector's boxes: the SAM paper's zero-shot protocol (§7.4).

A detector's boxes (COCO results format: a list of {"image_id", "category_id", "bbox" XYWH,
"score"}) prompt SAM one box each, batched per image, single-mask output; each result is the
detection with its mask added as a compressed COCO RLE, ready for pycocotools' COCOeval with
iouType "segm". `mask_ap` and `score_masks` score such results with that library (an optional
dependency: `pip install 'samkit[eval]'`, or `pip install pycocotools`); for LVIS files, whose
categories carry a `frequency` ("r" rare, "c" common, "f" frequent), also per frequency.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..interrupt import Interrupted, images
from ..io import as_floats, as_int, read_json, require_keys
from ..modeling import Sam
from ..rle import encode_coco_rle

# COCOeval.stats[:6] for iouType "segm", in its order.
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# LVIS category "frequency" -> the name of the AP over those categories only.
FREQUENCY_NAMES = {"r": "APr", "c": "APc", "f": "APf"}
# COCOeval's IoU thresholds (params.iouThrs): AP is the mean of the AP at each.
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class MaskAP:
    """Mask AP of a set of results, each value in 0..1 (NaN: no ground truth to score)."""

    # AP_NAMES, then APr, APc and APf when the ground truth's categories carry a "frequency"
    stats: dict[str, float]
    # "AP" (and APr, APc, APf as in `stats`) -> the AP at each of IOU_THRESHOLDS, all sizes
    by_iou: dict[str, list[float]]


@dataclass(frozen=True)
class BoxInputs:
    """What box prompting runs on, checked by `box_inputs`."""

    detections: list[dict[str, Any]]  # COCO results records, as `check_detections` gives
    images: list[tuple[int, Path]]  # (image_id, path) of every image with a detection


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


def box_inputs(
    coco_json: str | os.PathLike[str],
    images: str | os.PathLike[str],
    detections_json: str | os.PathLike[str] | None = None,
) -> BoxInputs:
    """Read and check a COCO instances file, its image folder and the detections, before any
    model is loaded.

    detections_json: a COCO results file (`read_detections`); None takes the annotations' own
    boxes (`ground_truth_detections`: an oracle detector). Every image with a detection must
    exist in `images` with the width and height the COCO file gives, and the categories'
    LVIS "frequency", where there is one, must be known. Raises ValueError naming the file
    and what is wrong.
    """
    from ..io.coco import read_coco
    from ..io.images import image_size

    if not Path(coco_json).is_file():
        raise ValueError(f"{os.fspath(coco_json)}: no such file (the COCO instances JSON)")
    coco = read_coco(coco_json)
    category_frequencies(list(coco.categories.values()), os.fspath(coco_json))
    folder = Path(images)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (the images of {os.fspath(coco_json)})")
    if detections_json is None:
        annotations = [a for anns in coco.annotations.values() for a in anns]
        detections = check_detections(
            ground_truth_detections(annotations),
            coco.images,
            where=f"{os.fspath(coco_json)} boxes",
        )
    else:
        if not Path(detections_json).is_file():
            raise ValueError(f"{os.fspath(detections_json)}: no such file (the detections JSON)")
        detections = read_detections(detections_json, coco.images)
    found = []
    for image_id in dict.fromkeys(d["image_id"] for d in detections):
        info = coco.images[image_id]
        path = folder / str(info["file_name"])
        if not path.is_file():
            raise ValueError(f"image {image_id}: {path} does not exist")
        width, height = image_size(path)
        if (width, height) != (int(info["width"]), int(info["height"])):
            raise ValueError(
                f"image {image_id}: {path} is {width}x{height} but {os.fspath(coco_json)} says "
                f"{info['width']}x{info['height']} (width x height)"
            )
        found.append((image_id, path))
    return BoxInputs(detections, found)


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
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Prompt SAM with every detection's box and return the detections with masks.

    coco_images: (image_id, image path) pairs; detections: COCO results records
    ({"image_id", "category_id", "bbox" [x, y, w, h] pixels, "score"}, see `check_detections`).
    Each image is encoded once and its boxes decoded `batch_size` at a time with
    `multimask_output=False`. Returns one record per detection, in the input order: the
    detection's fields plus "segmentation", a compressed COCO RLE {"size": [h, w],
    "counts": str}. Runs on the model's device. `progress`: a progress bar over the images on
    stderr. Interrupted (SIGINT, SIGTERM), raises `Interrupted` saying how many images were
    done.
    """
    from tqdm import tqdm

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
    bar = tqdm(by_image.items(), unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for image_id, indices in bar:
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
        bar.close()
        raise Interrupted(stop.signum, f"{images(done)} segmented") from None
    return [r for r in results if r is not None]


def require_pycocotools(what: str = "scoring mask AP") -> None:
    """Raise RuntimeError, saying how to install it, unless pycocotools can be imported."""
    try:
        from pycocotools import coco, cocoeval, mask  # noqa: F401
    except ImportError:
        raise RuntimeError(
            f"{what} needs pycocotools: pip install pycocotools (or 'samkit[eval]')"
        ) from None


def mask_ap(
    ground_truth: str | os.PathLike[str] | Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    """Mask AP of `results` (COCO results with "segmentation") against a COCO instances file
    or dict: `score_masks(...).stats`, {"AP", "AP50", "AP75", "APs", "APm", "APl"} and, for
    LVIS categories, {"APr", "APc", "APf"}."""
    return score_masks(ground_truth, results).stats


def score_masks(
    ground_truth: str | os.PathLike[str] | Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
) -> MaskAP:
    """Score `results` (COCO results with "segmentation") against a COCO instances file or
    dict with pycocotools' COCOeval, iouType "segm".

    stats: COCOeval.stats[:6] (AP_NAMES, in 0..1); a size with no ground truth is NaN. When
    the categories carry LVIS's "frequency" ("r", "c" or "f"), also APr, APc and APf: the AP
    of COCOeval restricted to those categories (NaN for a frequency no category has). This is
    COCOeval's exhaustive protocol with its 100 detections per image, not LVIS's federated
    one. by_iou: the AP at each of IOU_THRESHOLDS, for "AP" and each frequency. Every image of
    the ground truth is scored, so the objects of an image without results count as missed.
    Ground-truth annotations without "iscrowd" or "area" (files from other tools) get 0 and
    their mask's pixel count.
    """
    require_pycocotools()
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    if not results:
        raise ValueError("no results to score: mask AP needs at least one detection")
    if isinstance(ground_truth, (str, os.PathLike)):
        data: dict[str, Any] = read_json(ground_truth)
    else:
        data = copy.deepcopy(dict(ground_truth))
    require_keys(data, ("images", "annotations"), "mask_ap: ground truth")
    data.setdefault("categories", [])
    by_frequency = category_frequencies(data["categories"], "mask_ap: ground truth")
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
        stats, curve = _cocoeval(gt, dt, None)
        ap = {name: value for name, value in zip(AP_NAMES, stats, strict=True)}
        by_iou = {"AP": curve}
        for frequency, category_ids in by_frequency.items():
            name = FREQUENCY_NAMES[frequency]
            if category_ids:
                stats, by_iou[name] = _cocoeval(gt, dt, category_ids)
                ap[name] = stats[0]
            else:
                ap[name], by_iou[name] = math.nan, [math.nan] * len(IOU_THRESHOLDS)
    return MaskAP(ap, by_iou)


def category_frequencies(categories: Any, where: str) -> dict[str, list[int]]:
    """LVIS frequency ("r", "c", "f") -> the ids of its categories, for each of the three
    when any category of the list `categories` has a "frequency"; else {}. Raises ValueError
    naming `where` (the file) for another frequency."""
    if not isinstance(categories, list):
        raise ValueError(f"{where}: 'categories' must be a list; got {type(categories).__name__}")
    found: dict[str, list[int]] = {}
    for i, category in enumerate(categories):
        if not isinstance(category, Mapping) or "frequency" not in category:
            continue
        frequency = category["frequency"]
        if frequency not in FREQUENCY_NAMES:
            raise ValueError(
                f"{where}: categories[{i}]: 'frequency' is LVIS's 'r', 'c' or 'f'; "
                f"got {frequency!r}"
            )
        category_id = as_int(category.get("id"), f"{where}: categories[{i}] 'id'")
        found.setdefault(frequency, []).append(category_id)
    return {f: found.get(f, []) for f in FREQUENCY_NAMES} if found else {}


def _cocoeval(gt: Any, dt: Any, category_ids: list[int] | None) -> tuple[list[float], list[float]]:
    """COCOeval "segm" over every image of `gt` (and only `category_ids`, when given):
    its stats[:6] and the AP at each IoU threshold (all sizes, 100 detections), NaN for -1."""
    from pycocotools.cocoeval import COCOeval

    evaluator = COCOeval(gt, dt, iouType="segm")
    evaluator.params.imgIds = sorted(gt.getImgIds())
    if category_ids is not None:
        evaluator.params.catIds = category_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = np.asarray(evaluator.stats[: len(AP_NAMES)], dtype=np.float64)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K): area "all", most dets
    curve = [float(p[p > -1].mean()) if (p > -1).any() else math.nan for p in precision]
    return [math.nan if v < 0 else float(v) for v in stats], curve


def ap_markdown(ap: Mapping[str, float]) -> str:
    """A one-row markdown table of `mask_ap`'s result, in percent."""
    names = [k for k in (*AP_NAMES, *FREQUENCY_NAMES.values()) if k in ap]
    cells = [percent(ap[k]) for k in names]
    return (
        "| " + " | ".join(names) + " |\n"
        "|" + "---:|" * len(names) + "\n"
        "| " + " | ".join(cells) + " |\n"
    )


def percent(value: float) -> str:
    """An AP in 0..1 as a percentage with one decimal; NaN (no ground truth) as "n/a"."""
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"

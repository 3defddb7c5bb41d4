"""Zero-shot object proposals: the SAM paper's protocol (§7.3, details in its appendix D.3).

The automatic mask generator is the proposal generator, run with more points, zoomed crops and
its quality filters lowered to nothing, so that it proposes many masks: a 64x64 point grid on
the whole image plus one layer of 2x2 crops (32x32 points each), no filtering by predicted IoU
or stability score, and NMS at box IoU 0.9 within and across crops (`PROPOSAL_SETTINGS`). Masks
are ranked by the mean of predicted IoU and stability score (as Meta's authors describe it in
segment-anything issue #205) and the top 1000 an image are kept. The metric is class-agnostic
mask average recall: the recall of the ground-truth objects at IoU 0.50, 0.55, ..., 0.95,
averaged over those 10 thresholds, with at most k proposals an image (AR@k), overall, by COCO's
object sizes (small up to 32² px, medium 32² to 96², large above; COCOeval counts an area of
exactly 32² or 96² in both) and, on LVIS, by the frequency of the object's category.

Recall is computed by pycocotools' COCOeval (iouType "segm", useCats=0, params.maxDets = the
budgets), an optional dependency: `pip install 'samkit[eval]'`, or `pip install pycocotools`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..automatic import SamAutomaticMaskGenerator
from ..interrupt import Interrupted, images
from ..io import (
    as_floats,
    as_int,
    check_rle,
    image_size,
    load_image,
    read_json,
    record_rle,
    require_keys,
)
from .report import Line, line_plot

# The generator's settings for proposals: more points, crops, quality filters off. The 64x64
# grid, the filters off and NMS 0.9 are the setting of segment-anything issue #205, which the
# reply of Meta's authors there does not correct (it adds the ranking); the crop layer is this
# module's reading of "crops" in the protocol, not checked against the paper's text here
# (`--crop-n-layers 0` runs without).
PROPOSAL_SETTINGS: dict[str, float] = {
    "points_per_side": 64,
    "crop_n_layers": 1,
    "crop_n_points_downscale_factor": 2,
    "pred_iou_thresh": 0.0,  # 0 turns the filter off
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 0.9,
    "crop_nms_thresh": 0.9,
}
BUDGETS = (10, 100, 1000)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's, and AR's
AREAS = ("all", "small", "medium", "large")  # COCOeval's area ranges, in its order
FREQUENCIES = {"f": "frequent", "c": "common", "r": "rare"}  # LVIS categories' "frequency"
# Proposals have no class; they all get this category id, which COCOeval ignores (useCats=0).
PROPOSAL_CATEGORY = 1


@dataclass(frozen=True)
class GroupRecall:
    """Recall of one group of ground-truth objects: `objects` of them (crowds not counted), and
    for each budget k the recall at each IoU threshold 0.50:0.05:0.95, shape (10,), with at
    most k proposals an image; NaN when the group has no objects."""

    group: str
    objects: int
    recall: dict[int, np.ndarray]

    def ar(self, budget: int) -> float:
        """AR@budget: the recall averaged over the IoU thresholds (NaN without objects)."""
        return float(np.mean(self.recall[budget]))


def require_pycocotools() -> None:
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "proposal recall needs pycocotools: pip install 'samkit[eval]'"
        ) from None


# -- ground truth ----------------------------------------------------------------------------
def read_ground_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`check_ground_truth` of a COCO or LVIS instances JSON file."""
    return check_ground_truth(read_json(path), os.fspath(path))


def check_ground_truth(data: Any, where: str = "ground truth") -> dict[str, Any]:
    """Check a COCO (or LVIS) instances dict and return it, images given a file_name.

    Images need id, width, height and file_name; an LVIS image has coco_url instead, whose last
    two parts become its file_name ("val2017/000000397133.jpg"), relative to a COCO folder
    holding train2017/ and val2017/. Annotations need id, image_id, category_id and a
    segmentation (polygons, or an RLE of the image's size); categories need id, and LVIS's
    frequency, where given, is "f", "c" or "r". Raises ValueError naming what is wrong.
    """
    require_keys(data, ("images", "annotations"), where)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"{where}: {key!r} must be a list; got {type(data[key]).__name__}")
    sizes: dict[int, tuple[int, int]] = {}
    for i, img in enumerate(data["images"]):
        here = f"{where}: images[{i}]"
        require_keys(img, ("id", "width", "height"), here)
        if "file_name" not in img:
            if not isinstance(img.get("coco_url"), str):
                raise ValueError(f"{here}: missing key 'file_name' (or LVIS's 'coco_url')")
            img["file_name"] = "/".join(img["coco_url"].split("/")[-2:])
        image_id = as_int(img["id"], f"{here} 'id'")
        if image_id in sizes:
            raise ValueError(f"{here}: duplicate image id {image_id}")
        h, w = as_int(img["height"], f"{here} 'height'"), as_int(img["width"], f"{here} 'width'")
        if h <= 0 or w <= 0:
            raise ValueError(f"{here}: width and height must be positive; got {w}x{h}")
        sizes[image_id] = (h, w)
    for i, cat in enumerate(data.get("categories", [])):
        require_keys(cat, ("id",), f"{where}: categories[{i}]")
        if cat.get("frequency", "f") not in FREQUENCIES:
            raise ValueError(
                f"{where}: categories[{i}]: 'frequency' must be 'f', 'c' or 'r' (LVIS); "
                f"got {cat['frequency']!r}"
            )
    seen: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        here = f"{where}: annotations[{i}]"
        require_keys(ann, ("id", "image_id", "category_id", "segmentation"), here)
        ann_id = as_int(ann["id"], f"{here} 'id'")
        if ann_id in seen:
            raise ValueError(f"{here}: duplicate annotation id {ann_id}")
        seen.add(ann_id)
        as_int(ann["category_id"], f"{here} 'category_id'")
        image_id = as_int(ann["image_id"], f"{here} 'image_id'")
        if image_id not in sizes:
            raise ValueError(f"{here}: 'image_id' {image_id} is not in 'images'")
        _check_segmentation(ann["segmentation"], here, sizes[image_id])
    return data


def _check_segmentation(seg: Any, where: str, shape: tuple[int, int]) -> None:
    if isinstance(seg, Mapping):
        check_rle(seg, f"{where} 'segmentation'", shape)
        return
    rings: list[Any] = seg if isinstance(seg, list) else [None]
    for ring in rings:  # pycocotools reads a list of 4 numbers as a box, not a polygon
        ok = isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ring)
        if not ok or not np.isfinite(ring).all():
            raise ValueError(
                f"{where}: 'segmentation' must be an RLE dict or a list of polygons, each a "
                f"flat list [x1, y1, x2, y2, ...] of at least 3 points; got {str(seg)[:80]}"
            )


def annotated_images(data: Mapping[str, Any]) -> list[int]:
    """Ids of the images with at least one object that is not a crowd, in file order: the only
    images whose proposals can change recall."""
    having = {a["image_id"] for a in data["annotations"] if not a.get("iscrowd", 0)}
    return [img["id"] for img in data["images"] if img["id"] in having]


def locate_images(
    data: Mapping[str, Any], image_ids: Iterable[int], folder: str | os.PathLike[str]
) -> list[tuple[int, Path]]:
    """(image id, path) of each image, its file_name under `folder`; raises ValueError for a
    missing file or one whose size (read from its header) differs from the JSON's."""
    info = {img["id"]: img for img in data["images"]}
    found = []
    for image_id in image_ids:
        img = info[image_id]
        path = Path(folder) / str(img["file_name"])
        if not path.is_file():
            raise ValueError(f"image {image_id}: {path} does not exist")
        width, height = image_size(path)
        if (width, height) != (int(img["width"]), int(img["height"])):
            raise ValueError(
                f"image {image_id}: {path} is {width}x{height} but the JSON says "
                f"{img['width']}x{img['height']} (width x height)"
            )
        found.append((image_id, path))
    return found


# -- proposals -------------------------------------------------------------------------------
def generate_proposals(
    generator: SamAutomaticMaskGenerator,
    coco_images: Sequence[tuple[int, str | os.PathLike[str]]],
    *,
    max_proposals: int = 1000,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run `generator` on each (image id, path); keep each image's `max_proposals` best masks,
    ranked by the mean of predicted IoU and stability score (the paper's ranking); empty masks
    are left out. Any output_mode works; "coco_rle" holds least.

    Returns COCO results records {"image_id", "category_id" (PROPOSAL_CATEGORY), "segmentation"
    (compressed RLE), "score"}, best first within an image. A progress bar goes to stderr when
    `progress`. Interrupted (SIGINT, SIGTERM), raises `Interrupted` saying how many images
    were done.
    """
    from tqdm import tqdm

    if max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1; got {max_proposals}")
    proposals: list[dict[str, Any]] = []
    done = 0
    try:
        for image_id, path in tqdm(
            coco_images, unit="img", disable=not progress, dynamic_ncols=True
        ):
            # Unfiltered, the generator also gives empty masks, whose stability is NaN.
            records = [r for r in generator.generate(load_image(path)) if r["area"] > 0]
            scores = [(r["predicted_iou"] + r["stability_score"]) / 2 for r in records]
            for i in sorted(range(len(records)), key=lambda i: -scores[i])[:max_proposals]:
                proposals.append(
                    {
                        "image_id": image_id,
                        "category_id": PROPOSAL_CATEGORY,
                        "segmentation": record_rle(records[i], f"image {image_id}"),
                        "score": float(scores[i]),
                    }
                )
            done += 1
    except Interrupted as stop:
        left = len(coco_images) - done
        raise Interrupted(
            stop.signum, f"{images(done)} done, {left} left; no results were written"
        ) from None
    return proposals


# -- recall ----------------------------------------------------------------------------------
def proposal_recall(
    ground_truth: Mapping[str, Any],
    proposals: Sequence[Mapping[str, Any]],
    budgets: Sequence[int] = BUDGETS,
    *,
    image_ids: Iterable[int] | None = None,
) -> list[GroupRecall]:
    """Mask recall of `proposals` against `ground_truth`, by pycocotools' COCOeval.

    ground_truth: an instances dict as `check_ground_truth` returns it (not changed here).
    proposals: records {"image_id", "segmentation" (COCO RLE or HxW mask, the image's size),
      "score"}; any category they carry is ignored. For AR@k only the k best of an image by
      score count, and one proposal matches at most one object (COCOeval's greedy matching).
    image_ids: the images the proposals were made for (default: all); objects of other images
      are not counted.

    Returns the groups "all", "small", "medium", "large" (COCO's area ranges, by each object's
    "area", its mask's pixel count where the file has none) and, when any category has LVIS's
    "frequency", "frequent", "common" and "rare". A frequency group is scored like "all" with
    the ground truth restricted to the objects of that frequency's categories and the same
    proposals (so one proposal may match an object in each group): the paper's AR@1000 by
    frequency. Crowd regions (iscrowd=1) are not objects, and a proposal on one costs nothing.
    """
    require_pycocotools()
    counts = sorted(set(budgets))
    if not counts or counts[0] < 1:
        raise ValueError(f"budgets must be whole numbers >= 1; got {list(budgets)}")
    data = copy.deepcopy(dict(ground_truth))
    require_keys(data, ("images", "annotations"), "proposal_recall: ground truth")
    data.setdefault("categories", [])
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in data["images"]}
    ids = list(sizes) if image_ids is None else list(dict.fromkeys(image_ids))
    if not ids:
        raise ValueError("no images to evaluate")
    unknown = [i for i in ids if i not in sizes]
    if unknown:
        raise ValueError(f"image_ids {unknown[:5]} are not images of the ground truth")
    wanted = set(ids)
    results = []
    for i, proposal in enumerate(proposals):
        here = f"proposals[{i}]"
        require_keys(proposal, ("image_id", "segmentation", "score"), here)
        if proposal["image_id"] not in wanted:
            raise ValueError(f"{here}: 'image_id' {proposal['image_id']!r} is not evaluated")
        results.append(
            {
                "image_id": proposal["image_id"],
                "category_id": PROPOSAL_CATEGORY,
                "segmentation": record_rle(proposal, here, sizes[proposal["image_id"]]),
                "score": as_floats(proposal["score"], 1, f"{here} 'score'")[0],
            }
        )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = _coco(data)
        dt = gt.loadRes(results) if results else _coco({**data, "annotations": []})
        rows = _evaluate(gt, dt, ids, counts, AREAS)
        frequency = {c["id"]: c["frequency"] for c in data["categories"] if "frequency" in c}
        if frequency:
            for code, name in FREQUENCIES.items():
                anns = [a for a in data["annotations"] if frequency.get(a["category_id"]) == code]
                group_gt = _coco({**data, "annotations": anns})
                (row,) = _evaluate(group_gt, dt, ids, counts, ("all",))
                rows.append(GroupRecall(name, row.objects, row.recall))
    return rows


def _coco(data: dict[str, Any]) -> Any:
    """A pycocotools COCO of `data`, with the fields COCOeval reads filled in where missing."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    for ann in coco.anns.values():
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))
    return coco


def _evaluate(
    gt: Any, dt: Any, image_ids: list[int], budgets: list[int], areas: Sequence[str]
) -> list[GroupRecall]:
    """COCOeval's recall (useCats=0, maxDets = budgets) for the named area ranges."""
    from pycocotools.cocoeval import COCOeval

    evaluator = COCOeval(gt, dt, iouType="segm")
    p = evaluator.params
    p.imgIds, p.useCats, p.maxDets, p.iouThrs = image_ids, 0, budgets, IOU_THRESHOLDS
    p.catIds = sorted({a["category_id"] for a in gt.dataset["annotations"]} | {PROPOSAL_CATEGORY})
    p.areaRng = [p.areaRng[AREAS.index(a)] for a in areas]
    p.areaRngLbl = list(areas)
    evaluator.evaluate()
    evaluator.accumulate()
    recall = evaluator.eval["recall"][:, 0]  # (T, A, M): thresholds, areas, budgets; -1: none
    n = len(p.imgIds)  # evalImgs: for each area range, each image
    rows = []
    for a, name in enumerate(areas):
        objects = sum(
            int(np.count_nonzero(e["gtIgnore"] == 0))
            for e in evaluator.evalImgs[a * n : (a + 1) * n]
            if e is not None
        )
        values = {
            k: np.where(recall[:, a, m] < 0, np.nan, recall[:, a, m]) for m, k in enumerate(budgets)
        }
        rows.append(GroupRecall(name, objects, values))
    return rows


# -- reports ---------------------------------------------------------------------------------
def to_markdown(rows: Sequence[GroupRecall]) -> str:
    """A markdown table: each group's objects and AR@k for each budget, in 0..1."""
    budgets = list(rows[0].recall)
    head = ["group", "objects", *(f"AR@{k}" for k in budgets)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        values = ("n/a" if math.isnan(r.ar(k)) else f"{r.ar(k):.3f}" for k in budgets)
        lines.append("| " + " | ".join([r.group, str(r.objects), *values]) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[GroupRecall], path: str | os.PathLike[str]) -> None:
    """One line a group and budget: its AR and the recall at each IoU threshold (empty: none)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["group", "objects", "budget", "AR", *(f"recall@{t:.2f}" for t in IOU_THRESHOLDS)]
        )
        for r in rows:
            for k, recall in r.recall.items():
                cells = ["" if math.isnan(v) else f"{v:.4f}" for v in (r.ar(k), *recall)]
                writer.writerow([r.group, r.objects, k, *cells])


def plot_png(
    rows: Sequence[GroupRecall], path: str | os.PathLike[str], size: tuple[int, int] = (640, 420)
) -> None:
    """Recall against IoU threshold at the largest budget, one line per group that has objects
    (`report.line_plot`)."""
    budget = max(rows[0].recall)
    lines = [
        Line(
            f"{r.group} (n={r.objects}) AR {r.ar(budget):.3f}", [float(v) for v in r.recall[budget]]
        )
        for r in rows
        if r.objects > 0
    ]
    line_plot(
        path,
        [f"{t:.2f}" for t in IOU_THRESHOLDS],
        lines,
        x_label="IoU threshold",
        y_label=f"recall ({budget} proposals an image)",
        size=size,
    )

"""Parity with Meta's `segment_anything`: the golden prompt cases and their replay.

`tools/make_goldens.py` runs the cases through the official package (in a throwaway venv) and
records the outputs; `compare` runs them through samkit and measures the differences, which
`tests/test_goldens.py` bounds and `tools/check_goldens.py` prints. Both packages have the same
predictor API, so one replay function (`run_case`) serves both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Image sizes (H, W): landscape and portrait, neither a multiple of the patch size.
IMAGE_SIZES = [(200, 300), (270, 180)]

# Prompts in original-image pixels. Each case runs on each image.
CASES: list[dict[str, Any]] = [
    dict(name="point", call="predict", multimask=True, point_coords=[[150, 100]], point_labels=[1]),
    dict(
        name="points_pos_neg",
        call="predict",
        multimask=True,
        point_coords=[[150, 100], [60, 40]],
        point_labels=[1, 0],
    ),
    dict(
        name="point_single",
        call="predict",
        multimask=False,
        point_coords=[[90, 120]],
        point_labels=[1],
    ),
    dict(name="box", call="predict", multimask=False, box=[30, 20, 160, 150]),
    dict(name="box_multimask", call="predict", multimask=True, box=[40.5, 10.25, 170, 130]),
    dict(
        name="box_points",
        call="predict",
        multimask=False,
        box=[30, 20, 160, 150],
        point_coords=[[100, 80], [35, 25]],
        point_labels=[1, 0],
    ),
    dict(
        name="logits",
        call="predict",
        multimask=True,
        return_logits=True,
        point_coords=[[10, 10]],
        point_labels=[1],
    ),
    dict(
        name="mask_input",
        call="predict",
        multimask=False,
        mask_from="point",
        point_coords=[[150, 100], [120, 90]],
        point_labels=[1, 1],
    ),
    dict(
        name="batched_boxes",
        call="predict_torch",
        multimask=True,
        boxes=[[30, 20, 160, 150], [0, 0, 179, 199], [50, 60, 70, 90]],
    ),
    dict(
        name="batched_points",
        call="predict_torch",
        multimask=False,
        point_coords=[[[20, 30], [100, 100]], [[170, 10], [5, 190]]],
        point_labels=[[1, 0], [1, 1]],
    ),
]


def make_image(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth colourful scene with a few flat shapes: structure for the model to react to."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(h // 20 + 2, w // 20 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, h)
    xs = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = (
        coarse[y0][:, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1][:, x0] * fy * (1 - fx)
        + coarse[y0][:, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1][:, x0 + 1] * fy * fx
    )
    yy, xx = np.mgrid[:h, :w]
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(15, 50)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


def run_case(
    predictor: Any, case: dict[str, Any], mask_input: np.ndarray | None
) -> dict[str, np.ndarray]:
    """One case through `predictor` (samkit's or the official SamPredictor, image set)."""
    t = predictor.transform
    size = predictor.original_size
    if case["call"] == "predict":
        masks, scores, low_res = predictor.predict(
            point_coords=np.array(case["point_coords"]) if "point_coords" in case else None,
            point_labels=np.array(case["point_labels"]) if "point_labels" in case else None,
            box=np.array(case["box"]) if "box" in case else None,
            mask_input=mask_input,
            multimask_output=case["multimask"],
            return_logits=case.get("return_logits", False),
        )
        return {"masks": masks, "scores": scores, "low_res": low_res}
    coords = labels = boxes = None
    if "point_coords" in case:
        coords = t.apply_coords_torch(torch.tensor(case["point_coords"], dtype=torch.float), size)
        labels = torch.tensor(case["point_labels"])
    if "boxes" in case:
        boxes = t.apply_boxes_torch(torch.tensor(case["boxes"], dtype=torch.float), size)
    masks, scores, low_res = predictor.predict_torch(coords, labels, boxes, None, case["multimask"])
    return {"masks": masks.numpy(), "scores": scores.numpy(), "low_res": low_res.numpy()}


def run_forward(sam: Any, transform: Any, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Sam.forward on both images at once, a point on the first and two boxes on the second."""
    t = transform
    batch = []
    for i, img in enumerate(images):
        resized = torch.as_tensor(t.apply_image(img)).permute(2, 0, 1).contiguous()
        record: dict[str, Any] = {"image": resized, "original_size": img.shape[:2]}
        if i == 0:
            record["point_coords"] = t.apply_coords_torch(
                torch.tensor([[[50.0, 60.0]]]), img.shape[:2]
            )
            record["point_labels"] = torch.tensor([[1]])
        else:
            boxes = torch.tensor([[10.0, 10.0, 120.0, 200.0], [60.0, 5.0, 170.0, 100.0]])
            record["boxes"] = t.apply_boxes_torch(boxes, img.shape[:2])
        batch.append(record)
    out = sam(batch, multimask_output=True)
    result: dict[str, np.ndarray] = {}
    for i, o in enumerate(out):
        for key, value in o.items():
            result[f"forward/{i}/{key}"] = value.numpy()
    return result


@dataclass
class Diff:
    case: str
    iou_max: float  # largest |IoU prediction difference|
    logits_max: float  # largest |low-res logit difference|
    mask_frac: float  # fraction of thresholded mask pixels that differ


def compare(prefix: str | Path) -> list[Diff]:
    """Run every stored case on samkit; `prefix` names `{prefix}.npz` and `.safetensors`."""
    from .. import SamPredictor, load

    prefix = Path(prefix)
    gold = np.load(f"{prefix}.npz")
    manifest = json.loads(gold["manifest"].tobytes())
    sam = load(f"{prefix}.safetensors")
    predictor = SamPredictor(sam)
    diffs: list[Diff] = []
    with torch.no_grad():
        for i in range(manifest["images"]):
            predictor.set_image(gold[f"image/{i}"])
            emb = predictor.get_image_embedding().numpy()
            diffs.append(
                Diff(f"{i}/embedding", 0.0, float(np.abs(emb - gold[f"embedding/{i}"]).max()), 0.0)
            )
            for case in manifest["cases"]:
                key = f"{i}/{case['name']}"
                mask_input = gold[f"{key}/mask_input"] if "mask_from" in case else None
                got = run_case(predictor, case, mask_input)
                diffs.append(diff_outputs(key, got, {k: gold[f"{key}/{k}"] for k in got}))
        images = [gold[f"image/{i}"] for i in range(manifest["images"])]
        got_forward = run_forward(sam, predictor.transform, images)
        for i in range(len(images)):
            got = {k: got_forward[f"forward/{i}/{k}"] for k in FORWARD_KEYS}
            want = {k: gold[f"forward/{i}/{k}"] for k in FORWARD_KEYS}
            diffs.append(diff_outputs(f"forward/{i}", _as_case(got), _as_case(want)))
    return diffs


FORWARD_KEYS = ("masks", "iou_predictions", "low_res_logits")


def _as_case(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sam.forward's output keys renamed to the predictor cases' (masks, scores, low_res)."""
    return {
        "masks": out["masks"],
        "scores": out["iou_predictions"],
        "low_res": out["low_res_logits"],
    }


def diff_outputs(name: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> Diff:
    """How far one case's outputs (masks, scores, low_res) are from the golden's."""
    for k in got:
        if got[k].shape != want[k].shape:
            raise AssertionError(f"{name}/{k}: shape {got[k].shape} != golden {want[k].shape}")
    masks_got, masks_want = got["masks"], want["masks"]
    if masks_got.dtype != np.bool_:  # return_logits: compare thresholded and raw
        masks_got, masks_want = masks_got > 0, masks_want > 0
    return Diff(
        name,
        float(np.abs(got["scores"] - want["scores"]).max()),
        float(np.abs(got["low_res"] - want["low_res"]).max()),
        float((masks_got != masks_want).mean()),
    )


def print_report(diffs: list[Diff]) -> None:
    """One line per case, then the worst of each measure (logits without the embedding)."""
    print(f"{'case':32s} {'max|dIoU|':>10s} {'max|dlogit|':>12s} {'mask px diff':>13s}")
    for d in diffs:
        print(f"{d.case:32s} {d.iou_max:10.2e} {d.logits_max:12.2e} {d.mask_frac:13.6%}")
    print(
        f"worst: IoU {max(d.iou_max for d in diffs):.2e}, logits "
        f"{max(d.logits_max for d in diffs if 'embedding' not in d.case):.2e}, "
        f"embedding {max(d.logits_max for d in diffs if 'embedding' in d.case):.2e}, "
        f"mask pixels {max(d.mask_frac for d in diffs):.5%}"
    )

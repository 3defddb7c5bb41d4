"""Replay the official package's golden cases with samkit and report the differences.

    python tools/check_goldens.py tests/goldens/core      # prints one line per case

`tests/test_goldens.py` asserts on the same numbers.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from samkit import SamPredictor, load


@dataclass
class Diff:
    case: str
    iou_max: float  # largest |IoU prediction difference|
    logits_max: float  # largest |low-res logit difference|
    mask_frac: float  # fraction of thresholded mask pixels that differ


def compare(prefix: str | Path) -> list[Diff]:
    """Run every stored case on samkit; `prefix` names `{prefix}.npz` and `.safetensors`."""
    prefix = Path(prefix)
    gold = np.load(f"{prefix}.npz")
    manifest = json.loads(gold["manifest"].tobytes())
    sam = load(f"{prefix}.safetensors")
    predictor = SamPredictor(sam)
    diffs = []
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
                got = _run_case(predictor, case, mask_input)
                diffs.append(_diff(key, got, {k: gold[f"{key}/{k}"] for k in got}))
        got_forward = _run_forward(sam, [gold[f"image/{i}"] for i in range(manifest["images"])])
        for i, out in enumerate(got_forward):
            want = {
                k: gold[f"forward/{i}/{k}"] for k in ("masks", "iou_predictions", "low_res_logits")
            }
            diffs.append(
                _diff(
                    f"forward/{i}",
                    {"masks": out[0], "scores": out[1], "low_res": out[2]},
                    {
                        "masks": want["masks"],
                        "scores": want["iou_predictions"],
                        "low_res": want["low_res_logits"],
                    },
                )
            )
    return diffs


def _diff(name: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> Diff:
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


def _run_case(predictor: SamPredictor, case: dict, mask_input: np.ndarray | None) -> dict:
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
    t, size = predictor.transform, predictor.original_size
    assert size is not None
    coords = labels = boxes = None
    if "point_coords" in case:
        coords = t.apply_coords_torch(torch.tensor(case["point_coords"], dtype=torch.float), size)
        labels = torch.tensor(case["point_labels"])
    if "boxes" in case:
        boxes = t.apply_boxes_torch(torch.tensor(case["boxes"], dtype=torch.float), size)
    masks, scores, low_res = predictor.predict_torch(coords, labels, boxes, None, case["multimask"])
    return {"masks": masks.numpy(), "scores": scores.numpy(), "low_res": low_res.numpy()}


def _run_forward(sam: torch.nn.Module, images: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
    """The same batched Sam.forward call as tools/make_goldens.py."""
    t = SamPredictor(sam).transform  # type: ignore[arg-type]
    batch = []
    for i, img in enumerate(images):
        resized = torch.as_tensor(t.apply_image(img)).permute(2, 0, 1).contiguous()
        record: dict = {"image": resized, "original_size": img.shape[:2]}
        if i == 0:
            point = torch.tensor([[[50.0, 60.0]]])
            record["point_coords"] = t.apply_coords_torch(point, img.shape[:2])
            record["point_labels"] = torch.tensor([[1]])
        else:
            boxes = torch.tensor([[10.0, 10.0, 120.0, 200.0], [60.0, 5.0, 170.0, 100.0]])
            record["boxes"] = t.apply_boxes_torch(boxes, img.shape[:2])
        batch.append(record)
    return [
        (o["masks"].numpy(), o["iou_predictions"].numpy(), o["low_res_logits"].numpy())
        for o in sam(batch, multimask_output=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="path of the goldens without extension")
    diffs = compare(parser.parse_args().prefix)
    print(f"{'case':32s} {'max|dIoU|':>10s} {'max|dlogit|':>12s} {'mask px diff':>13s}")
    for d in diffs:
        print(f"{d.case:32s} {d.iou_max:10.2e} {d.logits_max:12.2e} {d.mask_frac:13.6%}")
    print(
        f"worst: IoU {max(d.iou_max for d in diffs):.2e}, logits "
        f"{max(d.logits_max for d in diffs if 'embedding' not in d.case):.2e}, "
        f"mask pixels {max(d.mask_frac for d in diffs):.5%}"
    )


if __name__ == "__main__":
    main()

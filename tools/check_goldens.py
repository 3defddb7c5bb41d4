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
from golden_cases import run_case, run_forward

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
                got = run_case(predictor, case, mask_input)
                diffs.append(_diff(key, got, {k: gold[f"{key}/{k}"] for k in got}))
        images = [gold[f"image/{i}"] for i in range(manifest["images"])]
        got_forward = run_forward(sam, predictor.transform, images)
        for i in range(len(images)):
            got = {k: got_forward[f"forward/{i}/{k}"] for k in FORWARD_KEYS}
            want = {k: gold[f"forward/{i}/{k}"] for k in FORWARD_KEYS}
            diffs.append(_diff(f"forward/{i}", _as_case(got), _as_case(want)))
    return diffs


FORWARD_KEYS = ("masks", "iou_predictions", "low_res_logits")


def _as_case(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sam.forward's output keys renamed to the predictor cases' (masks, scores, low_res)."""
    return {
        "masks": out["masks"],
        "scores": out["iou_predictions"],
        "low_res": out["low_res_logits"],
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="path of the goldens without extension")
    print_report(compare(parser.parse_args().prefix))


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


if __name__ == "__main__":
    main()

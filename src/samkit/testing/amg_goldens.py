"""Parity with Meta's `SamAutomaticMaskGenerator`: replay its recorded masks with samkit.

`tools/make_amg_goldens.py` ran the official generator (throwaway venv) on stored images;
`compare` runs samkit's generator with the same weights and options, matches the masks both
ways at an IoU of at least 0.99 and reports the unmatched ones and the largest score
difference of the matched ones (`tests/test_amg_goldens.py`, `tools/check_amg_goldens.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..masks import mask_iou_matrix


@dataclass
class AmgDiff:
    name: str
    official: int  # masks from the official generator
    ours: int  # masks from samkit
    unmatched_official: int  # official masks with no samkit mask at IoU >= 0.99
    unmatched_ours: int  # samkit masks with no official mask at IoU >= 0.99
    score_max: float  # largest |predicted_iou| or |stability_score| difference of matches


def compare(folder: str | Path, iou_needed: float = 0.99) -> list[AmgDiff]:
    """Replay `folder`'s amg.json (configs and official records) on amg_images.npz."""
    from .. import SamAutomaticMaskGenerator, load

    folder = Path(folder)
    gold = json.loads((folder / "amg.json").read_text())
    images = np.load(folder / "amg_images.npz")
    sam = load(folder / "amg.safetensors")
    configs = {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in gold["configs"]}
    diffs = []
    for result in gold["results"]:
        generator = SamAutomaticMaskGenerator(sam, **configs[result["config"]])
        ours = generator.generate(images[f"arr_{result['image']}"])
        diffs.append(
            _match(f"{result['config']}/{result['image']}", result["records"], ours, iou_needed)
        )
    return diffs


def _match(
    name: str, theirs: list[dict[str, Any]], ours: list[dict[str, Any]], iou_needed: float
) -> AmgDiff:
    from ..rle import decode_coco_rle

    a = np.stack([decode_coco_rle(r["segmentation"]) for r in theirs]) if theirs else None
    b = np.stack([decode_coco_rle(r["segmentation"]) for r in ours]) if ours else None
    if a is None or b is None:
        return AmgDiff(name, len(theirs), len(ours), len(theirs), len(ours), 0.0)
    iou = mask_iou_matrix(a, b)
    best_b = iou.argmax(1)
    score_max = 0.0
    for i, j in enumerate(best_b):
        if iou[i, j] >= iou_needed:
            for key in ("predicted_iou", "stability_score"):
                score_max = max(score_max, abs(theirs[i][key] - ours[j][key]))
    return AmgDiff(
        name,
        len(theirs),
        len(ours),
        int((iou.max(1) < iou_needed).sum()),
        int((iou.max(0) < iou_needed).sum()),
        score_max,
    )

"""Golden outputs of Meta's official SamAutomaticMaskGenerator, for samkit's AMG parity test.

Runs in the throwaway venv with the official package (see make_goldens.py):

    PYTHONPATH=src:tools .venv-peer/bin/python tools/make_amg_goldens.py --weights W.safetensors

Seeded random weights give masks that are all or nothing, which the filters and NMS reduce to
one or two: no test of anything. The goldens therefore use trained weights (a samkit_tiny
trained for a few minutes on synthetic scenes by `python -m samkit.train`; any samkit-layout
file of a variant in make_goldens.VARIANTS works), copied next to the outputs, with thresholds
set so that many masks survive and every stage (IoU and stability filters, NMS within and
across crops, small-region cleanup) changes the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from make_goldens import VARIANTS, build_official
from safetensors.torch import load_file, safe_open, save_file
from segment_anything import SamAutomaticMaskGenerator

# Thresholds sit inside the briefly trained model's score distributions (predicted IoU ~0.1-0.35,
# stability at offset 0.25 ~0-0.8), so that each filter removes some masks and keeps others.
CONFIGS = [
    dict(
        name="crops_cleanup",
        points_per_side=8,
        points_per_batch=24,
        pred_iou_thresh=0.2,
        stability_score_thresh=0.5,
        stability_score_offset=0.25,
        box_nms_thresh=0.7,
        crop_n_layers=1,
        crop_nms_thresh=0.7,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=30,
        output_mode="coco_rle",
    ),
    dict(
        name="no_crops",
        points_per_side=12,
        points_per_batch=64,
        pred_iou_thresh=0.25,
        stability_score_thresh=0.6,
        stability_score_offset=0.25,
        output_mode="coco_rle",
    ),
]


def test_images() -> list[np.ndarray]:
    """Two held-out synthetic scenes (like the training data), one cropped to non-square."""
    from samkit.data.synthetic import make_scene

    return [make_scene(99, 0).image, np.ascontiguousarray(make_scene(99, 1).image[:, 20:220])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="samkit safetensors file")
    parser.add_argument("--variant", default="samkit_tiny", choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("tests/goldens"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    with safe_open(str(args.weights), "pt") as f:
        variant = (f.metadata() or {}).get("samkit_variant", args.variant)
    sam = build_official(VARIANTS[variant])
    sam.load_state_dict(load_file(str(args.weights)))
    images = test_images()
    results = []
    for config in CONFIGS:
        kwargs = {k: v for k, v in config.items() if k != "name"}
        generator = SamAutomaticMaskGenerator(sam, **kwargs)
        for i, image in enumerate(images):
            records = generator.generate(image)
            results.append({"config": config["name"], "image": i, "records": records})
            print(f"{config['name']} image {i}: {len(records)} masks")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"configs": CONFIGS, "results": results}
    (args.out / "amg.json").write_text(json.dumps(payload) + "\n")
    np.savez_compressed(args.out / "amg_images.npz", *images)
    state = {k: v.contiguous() for k, v in sam.state_dict().items()}
    save_file(state, str(args.out / "amg.safetensors"), {"samkit_variant": variant})


if __name__ == "__main__":
    main()

"""Golden outputs of Meta's official SamAutomaticMaskGenerator, for samkit's AMG parity test.

Runs in the throwaway venv with the official package (see make_goldens.py):

    .venv-peer/bin/python tools/make_amg_goldens.py     # tests/goldens/amg.json (+ amg.safetensors)

Seeded weights give near-zero logits, so every mask would fail the default filters. The
generator's output heads are scaled up (a fixed, recorded transform of the seeded weights) and
the thresholds set so that many masks survive and every stage (IoU and stability filters, NMS,
crops, small-region cleanup) changes the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from make_goldens import VARIANTS, build_official, make_image
from safetensors.torch import save_file
from segment_anything import SamAutomaticMaskGenerator

from samkit.build import seeded_init_

# Scale of the last layer of each hypernetwork MLP and of the IoU head.
MASK_HEAD_SCALE = 40.0
IOU_HEAD_SCALE = 8.0

CONFIGS = [
    dict(
        name="crops_cleanup",
        points_per_side=8,
        points_per_batch=24,
        pred_iou_thresh=0.05,
        stability_score_thresh=0.6,
        stability_score_offset=0.5,
        box_nms_thresh=0.6,
        crop_n_layers=1,
        crop_nms_thresh=0.6,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=40,
        output_mode="coco_rle",
    ),
    dict(
        name="no_crops",
        points_per_side=10,
        points_per_batch=64,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.5,
        stability_score_offset=1.0,
        output_mode="coco_rle",
    ),
]
IMAGE_SIZES = [(200, 300), (310, 190)]


def scaled_weights(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("mask_decoder.output_hypernetworks_mlps.") and ".layers.2." in name:
                p.mul_(MASK_HEAD_SCALE)
            elif name.startswith("mask_decoder.iou_prediction_head.layers.2."):
                p.mul_(IOU_HEAD_SCALE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/goldens"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    sam = seeded_init_(build_official(VARIANTS["samkit_tiny"]), seed=1)
    scaled_weights(sam)
    images = [make_image(20 + i, h, w) for i, (h, w) in enumerate(IMAGE_SIZES)]
    results = []
    for config in CONFIGS:
        kwargs = {k: v for k, v in config.items() if k != "name"}
        generator = SamAutomaticMaskGenerator(sam, **kwargs)
        for i, image in enumerate(images):
            records = generator.generate(image)
            results.append({"config": config["name"], "image": i, "records": records})
            print(f"{config['name']} image {i}: {len(records)} masks")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"configs": CONFIGS, "image_sizes": IMAGE_SIZES, "results": results}
    (args.out / "amg.json").write_text(json.dumps(payload) + "\n")
    np.savez_compressed(args.out / "amg_images.npz", *images)
    state = {k: v.contiguous() for k, v in sam.state_dict().items()}
    save_file(state, str(args.out / "amg.safetensors"), {"samkit_variant": "samkit_tiny"})


if __name__ == "__main__":
    main()

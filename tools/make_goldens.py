"""Golden outputs from Meta's official `segment_anything`, for samkit's parity tests.

Runs in a throwaway venv that has the official package (never a samkit dependency):

    make goldens                      # tests/goldens/core.npz + core.safetensors
    .venv-peer/bin/python tools/make_goldens.py --variant vit_b --out /tmp/vitb

It builds the official model at the given size, fills it with samkit's seeded weights (so every
parameter, relative positions included, matters), runs every prompt case in CASES through the
official SamPredictor / Sam.forward, and stores weights, images, prompts and outputs.
`tools/check_goldens.py` replays the cases with samkit and reports the differences.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from segment_anything import SamPredictor, sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from samkit.build import seeded_init_

# Hyperparameters of samkit's variants, spelled out for the official classes.
VARIANTS = {
    "samkit_tiny": dict(
        embed=64,
        depth=4,
        heads=2,
        global_idx=(1, 3),
        size=256,
        window=7,
        prompt=64,
        dec_heads=4,
        dec_mlp=256,
        iou_hidden=64,
    ),
    "vit_b": dict(
        embed=768,
        depth=12,
        heads=12,
        global_idx=(2, 5, 8, 11),
        size=1024,
        window=14,
        prompt=256,
        dec_heads=8,
        dec_mlp=2048,
        iou_hidden=256,
    ),
}

# Image sizes (H, W): landscape and portrait, neither a multiple of the patch size.
IMAGE_SIZES = [(200, 300), (270, 180)]

# Prompts in original-image pixels. Each case runs on each image.
CASES: list[dict] = [
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


def build_official(v: dict) -> Sam:
    grid = v["size"] // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=v["depth"],
            embed_dim=v["embed"],
            img_size=v["size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=v["heads"],
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=v["global_idx"],
            window_size=v["window"],
            out_chans=v["prompt"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=v["prompt"],
            image_embedding_size=(grid, grid),
            input_image_size=(v["size"], v["size"]),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=v["prompt"], mlp_dim=v["dec_mlp"], num_heads=v["dec_heads"]
            ),
            transformer_dim=v["prompt"],
            iou_head_depth=3,
            iou_head_hidden_dim=v["iou_hidden"],
        ),
    ).eval()


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


def run_case(predictor: SamPredictor, case: dict, mask_input: np.ndarray | None) -> dict:
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


def run_forward(sam: Sam, images: list[np.ndarray]) -> dict:
    """Sam.forward on both images at once, a point on the first and two boxes on the second."""
    t = SamPredictor(sam).transform
    batch = []
    for i, img in enumerate(images):
        resized = torch.as_tensor(t.apply_image(img)).permute(2, 0, 1).contiguous()
        record = {"image": resized, "original_size": img.shape[:2]}
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
    result = {}
    for i, o in enumerate(out):
        for key, value in o.items():
            result[f"forward/{i}/{key}"] = value.numpy()
    return result


def write_official_shapes(path: Path) -> None:
    """State-dict key -> shape of the official vit_b/l/h, built on the meta device."""
    shapes = {}
    for name in ("vit_b", "vit_l", "vit_h"):
        with torch.device("meta"):
            model = sam_model_registry[name]()
        shapes[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
    path.write_text(json.dumps(shapes, indent=0, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="samkit_tiny", choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("tests/goldens"))
    parser.add_argument("--name", default="core")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    sam = seeded_init_(build_official(VARIANTS[args.variant]), args.seed)
    predictor = SamPredictor(sam)
    images = [make_image(10 + i, h, w) for i, (h, w) in enumerate(IMAGE_SIZES)]
    arrays: dict[str, np.ndarray] = {}
    for i, img in enumerate(images):
        arrays[f"image/{i}"] = img
        predictor.set_image(img)
        arrays[f"embedding/{i}"] = predictor.get_image_embedding().numpy()
        outputs: dict[str, dict] = {}
        for case in CASES:
            mask_input = None
            if "mask_from" in case:
                prev = outputs[case["mask_from"]]
                mask_input = prev["low_res"][np.argmax(prev["scores"])][None]
                arrays[f"{i}/{case['name']}/mask_input"] = mask_input
            outputs[case["name"]] = run_case(predictor, case, mask_input)
            for key, value in outputs[case["name"]].items():
                arrays[f"{i}/{case['name']}/{key}"] = value
    arrays.update(run_forward(sam, images))
    manifest = {"variant": args.variant, "cases": CASES, "images": len(images)}
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / f"{args.name}.npz", **arrays)
    state = {k: v.contiguous() for k, v in sam.state_dict().items()}
    save_file(state, str(args.out / f"{args.name}.safetensors"), {"samkit_variant": args.variant})
    print(f"wrote {args.out / args.name}.npz/.safetensors ({len(arrays)} arrays, {args.variant})")
    write_official_shapes(args.out / "official_shapes.json")


if __name__ == "__main__":
    main()

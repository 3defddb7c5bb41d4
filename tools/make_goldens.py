"""Golden outputs from Meta's official `segment_anything`, for samkit's parity tests.

Runs in a throwaway venv that has the official package (never a samkit dependency):

    make goldens                      # tests/goldens/core.npz + core.safetensors
    .venv-peer/bin/python tools/make_goldens.py --variant vit_b --out /tmp/vitb

It builds the official model at the given size, fills it with samkit's seeded weights (so every
parameter, relative positions included, matters), runs every prompt case in CASES through the
official SamPredictor / Sam.forward (the cases are `samkit.testing.goldens`'s), and stores
weights, images, prompts and outputs. `tools/check_goldens.py` replays the cases with samkit
and reports the differences.
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
from samkit.testing.goldens import CASES, IMAGE_SIZES, make_image, run_case, run_forward

# The encoder trunk samkit_default and samkit_narrow share.
SAMKIT_TRUNK = dict(embed=128, depth=6, heads=4, global_idx=(2, 5), size=128, patch=4, window=16)
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
    "samkit_default": dict(
        **SAMKIT_TRUNK,
        prompt=256,
        dec_heads=8,
        dec_mlp=2048,
        iou_hidden=256,
    ),
    "samkit_narrow": dict(
        **SAMKIT_TRUNK,
        prompt=96,
        dec_heads=4,
        dec_mlp=768,
        iou_hidden=128,
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


def build_official(v: dict) -> Sam:
    patch = v.get("patch", 16)
    grid = v["size"] // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=v["depth"],
            embed_dim=v["embed"],
            img_size=v["size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=v["heads"],
            patch_size=patch,
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
    arrays.update(run_forward(sam, predictor.transform, images))
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

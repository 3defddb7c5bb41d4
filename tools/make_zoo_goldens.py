"""Model-zoo goldens: MobileSAM's own code (vit_t) and transformers' SamModel (HF layout).

Runs in the throwaway peer venv (`make peer-venv` installs mobilesam-mirror and transformers):

    make zoo-goldens          # tests/goldens/zoo_vit_t.npz, zoo_hf.npz, zoo_shapes.json

vit_t: MobileSAM's full-size model gets samkit's seeded vit_t weights (plus a stand-in for its
unused ImageNet head) and answers every golden prompt case through its SamPredictor.
hf: transformers' SamModel, configured as samkit_tiny, gets samkit_tiny's seeded weights
converted by `samkit.layouts.to_hf` and answers the same cases from the same preprocessed
image; its masks go through SamImageProcessor.post_process_masks.
tools/check_zoo_goldens.py replays the cases with samkit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from samkit.layouts import to_hf
from samkit.testing.goldens import CASES, run_case
from samkit.testing.zoo_goldens import (
    SEED,
    ZOO,
    array_sha256,
    mobile_sam_head,
    sample_embedding,
    sample_outputs,
    seeded_weights,
    weights_sha256,
    zoo_images,
)

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)


def vit_t_goldens(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    from mobile_sam import SamPredictor, sam_model_registry

    ref = sam_model_registry["vit_t"]()
    weights = seeded_weights("vit_t")
    ref.load_state_dict({**weights, **mobile_sam_head()}, strict=True)
    # MobileSAM caches attention biases when switched to eval mode, and its builder does so
    # before loading weights: switch again so the loaded biases are the ones used.
    ref.eval()
    predictor = SamPredictor(ref)
    arrays: dict[str, np.ndarray] = {}
    for i, img in enumerate(images):
        predictor.set_image(img)
        arrays[f"embedding/{i}"] = sample_embedding(predictor.get_image_embedding().numpy())
        outputs: dict[str, dict] = {}
        for case in CASES:
            outputs[case["name"]] = run_case(predictor, case, _mask_input(case, outputs))
            for key, value in sample_outputs(outputs[case["name"]]).items():
                arrays[f"{i}/{case['name']}/{key}"] = value
    arrays["weights_sha256"] = _text(weights_sha256(weights))
    return arrays


def _mask_input(case: dict, outputs: dict[str, dict]) -> np.ndarray | None:
    """Each side refines with its own previous output (as a user would), so this input differs
    between the reference and samkit by no more than that output does."""
    if "mask_from" not in case:
        return None
    prev = outputs[case["mask_from"]]
    return prev["low_res"][np.argmax(prev["scores"])][None]


def hf_goldens(images: list[np.ndarray], decoder_eps: float | None = None) -> dict[str, np.ndarray]:
    from segment_anything.utils.transforms import ResizeLongestSide
    from transformers import SamConfig, SamImageProcessor, SamModel

    size, prompt = 256, 64  # samkit_tiny
    config = SamConfig(
        vision_config=dict(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=2,
            global_attn_indexes=[1, 3],
            image_size=size,
            window_size=7,
            output_channels=prompt,
            num_pos_feats=prompt // 2,
        ),
        prompt_encoder_config=dict(hidden_size=prompt, image_size=size, mask_input_channels=16),
        mask_decoder_config=dict(
            hidden_size=prompt, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64
        ),
    )
    model = SamModel(config).eval()
    if decoder_eps is not None:  # for probing: SAM's two-way transformer uses eps 1e-5
        for module in model.mask_decoder.transformer.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = decoder_eps
    weights = seeded_weights("samkit_tiny")
    model.load_state_dict(to_hf(weights), strict=True)
    processor = SamImageProcessor(pad_size={"height": size, "width": size})
    transform = ResizeLongestSide(size)
    arrays: dict[str, np.ndarray] = {}
    for i, img in enumerate(images):
        resized = transform.apply_image(img)
        x = torch.as_tensor(resized).permute(2, 0, 1).float()
        x = F.pad((x - PIXEL_MEAN) / PIXEL_STD, (0, size - x.shape[2], 0, size - x.shape[1]))
        embedding = model.get_image_embeddings(x[None])
        if hasattr(embedding, "image_embeddings"):
            embedding = embedding.image_embeddings
        arrays[f"embedding/{i}"] = sample_embedding(embedding.numpy())
        sizes = (img.shape[:2], resized.shape[:2])
        outputs: dict[str, dict] = {}
        for case in CASES:
            mask_input = _mask_input(case, outputs)
            outputs[case["name"]] = _hf_case(
                model, processor, transform, embedding, case, sizes, mask_input
            )
            for key, value in sample_outputs(outputs[case["name"]]).items():
                arrays[f"{i}/{case['name']}/{key}"] = value
    arrays["weights_sha256"] = _text(weights_sha256(weights))
    return arrays


def write_reference_shapes(path: Path) -> None:
    """State-dict key -> shape of transformers' SamModel (vit-base config) and of MobileSAM's
    vit_t: what samkit's HF writer and vit_t must reproduce."""
    from mobile_sam import sam_model_registry
    from transformers import SamConfig, SamModel

    with torch.device("meta"):
        hf = SamModel(SamConfig())
    models = {"hf_vit_b": hf, "mobile_sam_vit_t": sam_model_registry["vit_t"]()}  # 10M: on CPU
    shapes = {
        name: {k: list(v.shape) for k, v in model.state_dict().items()}
        for name, model in models.items()
    }
    path.write_text(json.dumps(shapes, indent=0, sort_keys=True) + "\n")


def _hf_case(
    model: Any,
    processor: Any,
    transform: Any,
    embedding: torch.Tensor,
    case: dict,
    sizes: tuple[tuple[int, ...], tuple[int, ...]],
    mask_input: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """One golden case through SamModel: prompts in the resized image's frame, batched as
    (image, prompt batch, points, 2); outputs shaped like SamPredictor's."""
    original, resized = sizes
    batched = case["call"] == "predict_torch"
    inputs: dict[str, torch.Tensor] = {}
    if "point_coords" in case:
        coords = np.array(case["point_coords"], dtype=float)
        coords = transform.apply_coords(coords, original).reshape(-1, *coords.shape[-2:])
        inputs["input_points"] = torch.as_tensor(coords, dtype=torch.float)[None]
        labels = np.array(case["point_labels"]).reshape(coords.shape[:2])
        inputs["input_labels"] = torch.as_tensor(labels)[None]
    for key in ("box", "boxes"):
        if key in case:
            boxes = transform.apply_boxes(np.array(case[key], dtype=float), original)
            inputs["input_boxes"] = torch.as_tensor(boxes, dtype=torch.float)[None]
    if mask_input is not None:
        inputs["input_masks"] = torch.as_tensor(mask_input)[None]
    out = model(image_embeddings=embedding, multimask_output=case["multimask"], **inputs)
    low_res = out.pred_masks[0]  # (prompt batch, C, h, w)
    masks = processor.post_process_masks(
        [low_res],
        [original],
        [resized],
        binarize=not case.get("return_logits", False),
    )[0]
    result = {"masks": masks, "scores": out.iou_scores[0], "low_res": low_res}
    if not batched:  # SamPredictor.predict drops the prompt-batch axis
        result = {k: v[0] for k, v in result.items()}
    return {k: v.numpy() for k, v in result.items()}


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/goldens"))
    parser.add_argument("--only", choices=sorted(ZOO), help="make one of the goldens")
    parser.add_argument(
        "--hf-decoder-eps",
        type=float,
        help="override the LayerNorm eps of SamModel's two-way transformer (a probe, not for "
        "the committed goldens: transformers uses 1e-6 there, SAM 1e-5)",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in sorted(ZOO) if args.only is None else [args.only]:
        spec = ZOO[name]
        images = zoo_images(spec["images"])
        if name == "vit_t":
            arrays = vit_t_goldens(images)
        else:
            arrays = hf_goldens(images, args.hf_decoder_eps)
        for i, img in enumerate(images):  # rebuilt by the check; the hash proves it the same
            arrays[f"image_sha256/{i}"] = _text(array_sha256(img))
        manifest = {**spec, "seed": SEED, "cases": CASES}
        arrays["manifest"] = _text(json.dumps(manifest))
        np.savez_compressed(args.out / f"zoo_{name}.npz", **arrays)
        print(f"wrote {args.out / f'zoo_{name}.npz'} ({len(arrays)} arrays)")
    write_reference_shapes(args.out / "zoo_shapes.json")


if __name__ == "__main__":
    main()

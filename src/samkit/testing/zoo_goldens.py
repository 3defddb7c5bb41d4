"""Parity with the model zoo's references: MobileSAM's vit_t and transformers' SamModel.

`tools/make_zoo_goldens.py` (reference packages, throwaway venv) and `compare` (samkit) share
what is here. The weights are never stored: both sides rebuild them from samkit's
`seeded_init_` and the manifest records their sha256, so a golden stays a few hundred KB even
for the full-size vit_t. Outputs are stored sampled: masks bit-packed, low-res logits every
LOW_RES_STEP-th pixel, the first EMB_CHANNELS embedding channels every EMB_STEP-th position.
`compare` writes the seeded weights in the reference's file layout (a MobileSAM-style .pt with
its ImageNet head, or an HF-layout safetensors) and reads them back with `samkit.load`, so it
checks layout detection and key mapping as well as the model (`tests/test_zoo.py`,
`tools/check_zoo_goldens.py`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..build import sam_model_registry, seeded_init_
from ..modeling import Sam
from .goldens import IMAGE_SIZES, Diff, diff_outputs, make_image, run_case

# name -> the samkit variant whose seeded weights the reference runs, the file layout the
# check loads them from, and how many of goldens.IMAGE_SIZES it uses.
ZOO: dict[str, dict[str, Any]] = {
    "vit_t": dict(variant="vit_t", layout="mobile_sam", images=1),
    "hf": dict(variant="samkit_tiny", layout="hf", images=1),
}
SEED = 0
LOW_RES_STEP = 8
EMB_CHANNELS = 32
EMB_STEP = 4


def zoo_images(n: int) -> list[np.ndarray]:
    """The first n golden images (rebuilt from their seeds, not stored)."""
    return [make_image(10 + i, h, w) for i, (h, w) in enumerate(IMAGE_SIZES[:n])]


def seeded_weights(variant: str, seed: int = SEED) -> dict[str, torch.Tensor]:
    """samkit's `variant` filled by `seeded_init_(seed)`, as a state dict."""
    return seeded_init_(sam_model_registry[variant](), seed).state_dict()


def mobile_sam_head(seed: int = SEED) -> dict[str, torch.Tensor]:
    """Stand-in values for the ImageNet head MobileSAM's files carry (and SAM never uses)."""
    gen = torch.Generator().manual_seed(seed + 1)
    return {
        "image_encoder.norm_head.weight": 1 + 0.1 * torch.randn(320, generator=gen),
        "image_encoder.norm_head.bias": 0.1 * torch.randn(320, generator=gen),
        "image_encoder.head.weight": torch.randn(1000, 320, generator=gen) / 320**0.5,
        "image_encoder.head.bias": 0.1 * torch.randn(1000, generator=gen),
    }


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the names and raw bytes of every tensor, in sorted name order."""
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        sha.update(name.encode())
        sha.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def sample_outputs(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A predictor case's masks (thresholded, bit-packed), scores and sampled low-res logits."""
    masks = out["masks"] > 0 if out["masks"].dtype != np.bool_ else out["masks"]
    step = LOW_RES_STEP
    return {
        "masks": np.packbits(masks, axis=-1),
        "masks_shape": np.array(masks.shape),
        "scores": np.asarray(out["scores"], dtype=np.float32),
        "low_res": np.ascontiguousarray(out["low_res"][..., ::step, ::step]),
    }


def unpack_masks(packed: np.ndarray, shape: np.ndarray) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=int(shape[-1])).astype(bool).reshape(shape)


def sample_embedding(embedding: np.ndarray) -> np.ndarray:
    """(1, C, h, w) image embedding -> its first EMB_CHANNELS channels, every EMB_STEP-th cell."""
    return np.ascontiguousarray(embedding[:, :EMB_CHANNELS, ::EMB_STEP, ::EMB_STEP])


def load_as_reference(manifest: dict[str, Any], folder: Path) -> Sam:
    """The golden's seeded weights, written in the reference's layout, loaded by samkit."""
    from ..checkpoints import write_safetensors
    from ..layouts import to_hf
    from ..loading import load

    weights = seeded_weights(manifest["variant"], manifest["seed"])
    if manifest["layout"] == "hf":
        path = folder / "model.safetensors"
        write_safetensors(to_hf(weights), path)
    else:
        path = folder / "mobile_sam.pt"
        torch.save({**weights, **mobile_sam_head(manifest["seed"])}, path)
    return load(path)


def compare(path: str | Path) -> list[Diff]:
    """Replay one zoo golden (`tests/goldens/zoo_*.npz`) with samkit."""
    from ..predictor import SamPredictor

    gold = np.load(path)
    manifest = json.loads(gold["manifest"].tobytes())
    with tempfile.TemporaryDirectory() as tmp:
        sam = load_as_reference(manifest, Path(tmp))
    expected = gold["weights_sha256"].tobytes().decode()
    if weights_sha256(sam.state_dict()) != expected:
        raise AssertionError(
            "samkit's seeded weights are not the ones the goldens were made with (seeded_init_ "
            "or the variant changed); remake them with `make zoo-goldens`"
        )
    images = zoo_images(manifest["images"])
    for i, img in enumerate(images):
        if array_sha256(img) != gold[f"image_sha256/{i}"].tobytes().decode():
            raise AssertionError(f"golden image {i} is not the one the goldens were made with")
    predictor = SamPredictor(sam)
    diffs: list[Diff] = []
    with torch.no_grad():
        for i, img in enumerate(images):
            predictor.set_image(img)
            emb = sample_embedding(predictor.get_image_embedding().numpy())
            emb_max = float(np.abs(emb - gold[f"embedding/{i}"]).max())
            diffs.append(Diff(f"{i}/embedding", 0.0, emb_max, 0.0))
            outputs: dict[str, dict[str, np.ndarray]] = {}
            for case in manifest["cases"]:
                key = f"{i}/{case['name']}"
                mask_input = None
                if "mask_from" in case:  # refine with samkit's own previous output
                    prev = outputs[case["mask_from"]]
                    mask_input = prev["low_res"][np.argmax(prev["scores"])][None]
                outputs[case["name"]] = run_case(predictor, case, mask_input)
                got = sample_outputs(outputs[case["name"]])
                got["masks"] = unpack_masks(got["masks"], got["masks_shape"])
                want = {k: gold[f"{key}/{k}"] for k in ("scores", "low_res")}
                want["masks"] = unpack_masks(gold[f"{key}/masks"], gold[f"{key}/masks_shape"])
                del got["masks_shape"]
                diffs.append(diff_outputs(key, got, want))
    return diffs

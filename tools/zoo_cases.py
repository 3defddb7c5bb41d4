"""Model-zoo goldens: what make_zoo_goldens.py (reference packages) and check_zoo_goldens.py
(samkit) share. The weights are never stored: both sides rebuild them from samkit's
`seeded_init_` and the manifest records their sha256, so a golden stays a few hundred KB even
for the full-size vit_t. Outputs are stored sampled: masks bit-packed, low-res logits every
LOW_RES_STEP-th pixel, the first EMB_CHANNELS embedding channels every EMB_STEP-th position.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from golden_cases import IMAGE_SIZES, make_image

from samkit.build import sam_model_registry, seeded_init_

# name -> the samkit variant whose seeded weights the reference runs, the file layout the
# check loads them from, and how many of golden_cases.IMAGE_SIZES it uses.
ZOO = {
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

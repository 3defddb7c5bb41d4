"""The registry as a test matrix: every variant's structure runs forward and backward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from samkit import sam_model_registry
from samkit.build import _build_sam, build_samkit_tiny, seeded_init_
from samkit.modeling.image_encoder import get_rel_pos, window_partition, window_unpartition

GOLDENS = Path(__file__).parent / "goldens"
# Encoder structure of each official variant: (embed_dim, depth, heads, global blocks).
OFFICIAL = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "default"])
def test_official_variants_match_official_state_dict(name: str) -> None:
    """Keys and shapes equal the official model's, so official .pth files load strictly."""
    official = json.loads((GOLDENS / "official_shapes.json").read_text())
    with torch.device("meta"):
        model = sam_model_registry[name]()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official["vit_h" if name == "default" else name]


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_variant_structure_forward_backward(name: str, forward_backward: Any) -> None:
    """Each official variant's depth, heads and global-attention layout, at a small width and
    input size, runs forward and gets gradients everywhere."""
    _, depth, heads, global_idx = OFFICIAL[name]
    sam = _build_sam(
        encoder_embed_dim=heads * 4,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx,
        image_size=64,
        window_size=3,
        prompt_embed_dim=32,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    forward_backward(seeded_init_(sam))


def test_tiny_forward_backward(forward_backward: Any) -> None:
    forward_backward(seeded_init_(build_samkit_tiny()))


def test_window_partition_round_trip_with_padding() -> None:
    x = torch.randn(2, 10, 13, 4)
    windows, padded = window_partition(x, 7)
    assert windows.shape == (2 * 2 * 2, 7, 7, 4) and padded == (14, 14)
    assert torch.equal(window_unpartition(windows, 7, padded, (10, 13)), x)
    assert torch.equal(windows[0], x[0, :7, :7])


def test_get_rel_pos_interpolates_other_sizes() -> None:
    table = torch.arange(27, dtype=torch.float).reshape(27, 1).expand(27, 3)  # trained for 14
    same = get_rel_pos(14, 14, table)
    assert same.shape == (14, 14, 3)
    assert same[0, 0, 0] == 13 and same[13, 0, 0] == 26 and same[0, 13, 0] == 0
    resized = get_rel_pos(7, 7, table)  # linear resampling down to 13 entries
    assert resized.shape == (7, 7, 3)
    assert torch.all(resized[:, :, 0].diff(dim=0) > 0)


def test_sam_forward_shapes(tiny_sam: torch.nn.Module) -> None:
    image = torch.randint(0, 255, (3, 256, 192), dtype=torch.uint8)
    out = tiny_sam(
        [
            {
                "image": image,
                "original_size": (100, 75),
                "boxes": torch.tensor([[10.0, 10, 100, 100], [0, 0, 50, 60]]),
            },
            {
                "image": image,
                "original_size": (100, 75),
                "point_coords": torch.tensor([[[50.0, 50.0]]]),
                "point_labels": torch.tensor([[1]]),
            },
        ],
        multimask_output=False,
    )
    assert out[0]["masks"].shape == (2, 1, 100, 75) and out[0]["masks"].dtype == torch.bool
    assert out[1]["iou_predictions"].shape == (1, 1)
    assert out[1]["low_res_logits"].shape == (1, 1, 64, 64)


def test_decoder_rejects_mismatched_embedding_batch(tiny_sam: torch.nn.Module) -> None:
    sparse, dense = tiny_sam.prompt_encoder(points=None, boxes=torch.zeros(3, 4), masks=None)
    with pytest.raises(ValueError, match="batch 1 or 3"):
        tiny_sam.mask_decoder(
            image_embeddings=torch.zeros(2, 64, 16, 16),
            image_pe=tiny_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )


@pytest.mark.parametrize(
    ("low", "size"), [((256, 256), (1024, 1024)), ((32, 32), (128, 128)), ((64, 48), (700, 333))]
)
def test_postprocess_resize_gives_torchs_bilinear_values(
    low: tuple[int, int], size: tuple[int, int]
) -> None:
    import torch.nn.functional as F

    from samkit.modeling.sam import _resize

    torch.manual_seed(0)
    logits = torch.randn(2, 3, *low) * 10
    want = F.interpolate(logits.reshape(6, 1, *low), size, mode="bilinear", align_corners=False)
    got = _resize(logits, size)  # OpenCV at whole factors, torch at the other scale
    assert got.shape == (2, 3, *size)
    assert torch.allclose(got, want.reshape(2, 3, *size), atol=1e-4)
    with torch.enable_grad():  # training's resize keeps its gradient
        leaf = logits.clone().requires_grad_(True)
        _resize(leaf, size).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0

"""Model variants: one builder function each, sharing `_build_sam`, named in one dict."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from .modeling.common import LayerNorm2d


def build_sam_vit_h(checkpoint: str | Path | None = None) -> Sam:
    return _build_sam(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
        checkpoint=checkpoint,
    )


build_sam = build_sam_vit_h


def build_sam_vit_l(checkpoint: str | Path | None = None) -> Sam:
    return _build_sam(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
        checkpoint=checkpoint,
    )


def build_sam_vit_b(checkpoint: str | Path | None = None) -> Sam:
    return _build_sam(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
        checkpoint=checkpoint,
    )


def build_samkit_tiny(checkpoint: str | Path | None = None) -> Sam:
    """A ~0.4M-parameter variant for tests and golden files: 256 px input, a 16x16 embedding
    grid (so 7x7 windows need padding), 64-wide prompts. Not a useful segmenter by itself."""
    return _build_sam(
        encoder_embed_dim=64,
        encoder_depth=4,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1, 3),
        image_size=256,
        window_size=7,
        prompt_embed_dim=64,
        decoder_num_heads=4,
        decoder_mlp_dim=256,
        mask_in_chans=16,
        iou_head_hidden_dim=64,
        checkpoint=checkpoint,
    )


def build_samkit_default(checkpoint: str | Path | None = None) -> Sam:
    """samkit's bundled default model (~5M parameters), trained on synthetic scenes by
    `configs/default_model.json`. Sized for training on a 2-core CPU: a 128 px input with
    8 px patches gives a 16x16 embedding grid and 64x64 low-res masks, half the input's
    resolution (SAM's are a quarter; at a quarter, even perfect low-res logits cap the mIoU of
    our scenes' small objects near 0.97). The encoder is wide (192) but shallow (8 blocks,
    8x8 windows, 2 global blocks) because it runs once per image, while the 128-wide mask
    decoder runs for every prompt of every training round and dominates the cost."""
    return _build_sam(
        encoder_embed_dim=192,
        encoder_depth=8,
        encoder_num_heads=6,
        encoder_global_attn_indexes=(3, 7),
        image_size=128,
        patch_size=8,
        window_size=8,
        prompt_embed_dim=128,
        decoder_num_heads=4,
        decoder_mlp_dim=1024,
        mask_in_chans=16,
        iou_head_hidden_dim=128,
        checkpoint=checkpoint,
    )


def _build_sam(
    *,
    encoder_embed_dim: int,
    encoder_depth: int,
    encoder_num_heads: int,
    encoder_global_attn_indexes: tuple[int, ...],
    checkpoint: str | Path | None = None,
    image_size: int = 1024,
    patch_size: int = 16,
    window_size: int = 14,
    prompt_embed_dim: int = 256,
    decoder_depth: int = 2,
    decoder_num_heads: int = 8,
    decoder_mlp_dim: int = 2048,
    mask_in_chans: int = 16,
    iou_head_hidden_dim: int = 256,
) -> Sam:
    grid = image_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth,
            embed_dim=encoder_embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=encoder_num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=encoder_global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_num_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_head_hidden_dim,
        ),
    )
    sam.eval()
    if checkpoint is not None:
        from .checkpoints import load_weights, read_state_dict

        load_weights(sam, read_state_dict(checkpoint))
    return sam


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "samkit_tiny": build_samkit_tiny,
    "samkit_default": build_samkit_default,
}


def seeded_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and buffer with seeded random values, a stand-in for trained weights
    in tests, goldens and demos. Weights ~ N(0, 1/fan_in), norm scales near 1, small biases, and
    non-zero relative-position tables, so every path of the model affects the output."""
    gen = torch.Generator().manual_seed(seed)

    def fill(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(mean + std * torch.randn(tensor.shape, generator=gen).to(tensor.dtype))

    with torch.no_grad():
        for module in model.modules():
            for name, tensor in module.named_parameters(recurse=False):
                if isinstance(module, (nn.LayerNorm, LayerNorm2d)):
                    fill(tensor, 0.1, 1.0 if name == "weight" else 0.0)
                elif name == "weight":
                    fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
                    fill(tensor, fan_in**-0.5)
                else:  # biases, pos_embed, rel_pos_h/w
                    fill(tensor, 0.1)
            for name, buffer in module.named_buffers(recurse=False):
                if name == "positional_encoding_gaussian_matrix":
                    fill(buffer, 1.0)
    return model

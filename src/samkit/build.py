"""Model variants: one builder function each, sharing `_build_sam`, named in one dict."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from .modeling.common import LayerNorm2d
from .modeling.tiny_vit import TinyViT


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


def build_sam_vit_t(checkpoint: str | Path | None = None) -> Sam:
    """MobileSAM: a ~5.7M-parameter TinyViT image encoder distilled from ViT-H, with SAM's own
    prompt encoder and mask decoder. Loads MobileSAM's `mobile_sam.pt` unchanged."""
    encoder = TinyViT(
        img_size=1024,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        merge_strides=(2, 2, 1),  # the last merge keeps 64x64, so the grid is 1024 / 16
        out_chans=256,
    )
    return _assemble(encoder, image_size=1024, patch_size=16, checkpoint=checkpoint)


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
    """samkit's bundled default model (~6M parameters), trained on synthetic scenes by
    `make train-default` (`configs/default_model.json`). Its encoder trunk is sized for
    training on a 2-core CPU: a 128 px input with 4 px patches gives a 32x32 embedding grid, so
    the low-res masks (4x the grid) are the input's full resolution. 8 px patches (16x16 grid,
    64x64 masks) trained far slower: a token must then describe the exact outline of objects
    only one or two tokens wide, and most of our scenes' objects are that small. 16x16 windows
    (64 px) hold most objects whole; 2 global blocks see the rest. The prompt encoder and mask
    decoder are SAM's full size (256 wide, 8 heads, 32 output upscaling channels): the trunk
    was first trained under the narrow decoder of `samkit_narrow`, whose 12 channels per pixel
    capped its masks' accuracy."""
    return _samkit_trunk_sam(checkpoint)


def build_samkit_narrow(checkpoint: str | Path | None = None) -> Sam:
    """samkit_default's encoder trunk with a narrow prompt encoder and mask decoder (96 wide,
    4 heads), ~2M parameters and ~3x cheaper a training step: stages 1-3 of
    `make train-default` train the trunk with it (it was the bundled model until the full
    decoder overtook it). Training-only: in `training_only_registry`, not `sam_model_registry`."""
    return _samkit_trunk_sam(
        checkpoint,
        prompt_embed_dim=96,
        decoder_num_heads=4,
        decoder_mlp_dim=768,
        iou_head_hidden_dim=128,
    )


def _samkit_trunk_sam(checkpoint: str | Path | None, **decoder: int) -> Sam:
    """samkit's 128 px encoder trunk (4 px patches, 128 wide, 6 deep, 16x16 windows, 2
    global blocks) with a prompt encoder and mask decoder sized by `decoder` (SAM's when
    empty)."""
    return _build_sam(
        encoder_embed_dim=128,
        encoder_depth=6,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(2, 5),
        image_size=128,
        patch_size=4,
        window_size=16,
        checkpoint=checkpoint,
        **decoder,
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
    image_encoder = ImageEncoderViT(
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
    )
    return _assemble(
        image_encoder,
        image_size=image_size,
        patch_size=patch_size,
        prompt_embed_dim=prompt_embed_dim,
        decoder_depth=decoder_depth,
        decoder_num_heads=decoder_num_heads,
        decoder_mlp_dim=decoder_mlp_dim,
        mask_in_chans=mask_in_chans,
        iou_head_hidden_dim=iou_head_hidden_dim,
        checkpoint=checkpoint,
    )


def _assemble(
    image_encoder: ImageEncoderViT | TinyViT,
    *,
    image_size: int,
    patch_size: int,
    checkpoint: str | Path | None,
    prompt_embed_dim: int = 256,
    decoder_depth: int = 2,
    decoder_num_heads: int = 8,
    decoder_mlp_dim: int = 2048,
    mask_in_chans: int = 16,
    iou_head_hidden_dim: int = 256,
) -> Sam:
    """`Sam` around `image_encoder` (whose embedding grid is image_size / patch_size), with
    SAM's prompt encoder and mask decoder; weights from `checkpoint` in any layout."""
    grid = image_size // patch_size
    sam = Sam(
        image_encoder=image_encoder,
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
        from .layouts import to_samkit

        load_weights(sam, to_samkit(read_state_dict(checkpoint))[0])
    return sam


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "vit_t": build_sam_vit_t,
    "samkit_tiny": build_samkit_tiny,
    "samkit_default": build_samkit_default,
}
# Architectures only training builds: no weights of theirs load by name, so they stay out of
# the public registry. A weights file of one (a run's model.safetensors) still loads by path.
training_only_registry: dict[str, Callable[..., Sam]] = {
    "samkit_narrow": build_samkit_narrow,  # stages 1-3 of configs/default_model.json
}
variant_registry = {**sam_model_registry, **training_only_registry}  # every variant samkit builds


def seeded_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and buffer with seeded random values, a stand-in for trained weights
    in tests, goldens and demos. Weights ~ N(0, 1/fan_in), norm scales near 1, small biases, and
    non-zero relative-position tables and BatchNorm statistics, so every path of the model
    affects the output."""
    gen = torch.Generator().manual_seed(seed)

    def fill(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(mean + std * torch.randn(tensor.shape, generator=gen).to(tensor.dtype))

    with torch.no_grad():
        for module in model.modules():
            for name, tensor in module.named_parameters(recurse=False):
                if isinstance(module, (nn.LayerNorm, LayerNorm2d, nn.BatchNorm2d)):
                    fill(tensor, 0.1, 1.0 if name == "weight" else 0.0)
                elif name == "weight":
                    fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
                    fill(tensor, fan_in**-0.5)
                else:  # biases, pos_embed, rel_pos_h/w
                    fill(tensor, 0.1)
            for name, buffer in module.named_buffers(recurse=False):
                if name == "positional_encoding_gaussian_matrix":
                    fill(buffer, 1.0)
                elif name == "running_mean":  # BatchNorm statistics (TinyViT)
                    fill(buffer, 0.1)
                elif name == "running_var":  # positive, around 1
                    buffer.copy_(0.5 + torch.rand(buffer.shape, generator=gen))
    return model

"""Mask decoder: two-way transformer over prompt and image tokens, upscaling, hypernetworks."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .factored import (
    block_gains,
    factored_transformer,
    make_projection,
    prepare_projections,
    project,
)
from .transformer import ImageKeys, TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predicts masks and their IoU from an image embedding and prompt embeddings.

    Output token 0 is the single-mask output (used when prompts are unambiguous); tokens
    1..num_multimask_outputs are the multimask outputs (whole / part / subpart).
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(
                input_dim=transformer_dim,
                hidden_dim=transformer_dim,
                output_dim=transformer_dim // 8,
                num_layers=3,
            )
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            input_dim=transformer_dim,
            hidden_dim=iou_head_hidden_dim,
            output_dim=self.num_mask_tokens,
            num_layers=iou_head_depth,
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        prepared: ImageKeys | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for B prompts on one image.

        Arguments:
          image_embeddings: (1, C, H, W) embedding of the image (or (B, C, H, W), one per prompt).
          image_pe: (1, C, H, W) positional encoding of the embedding grid.
          sparse_prompt_embeddings: (B, N, C) point and box tokens.
          dense_prompt_embeddings: (B, C, H, W) mask-prompt embedding.
          multimask_output: return the 3 multimask outputs instead of the single one.
          prepared: `prepare(image_embeddings, image_pe, dense)` of this image, when every
            prompt has that same dense embedding (no mask prompt): the decoder then takes
            the factored path (`factored.py`), and image_embeddings/dense are not read.

        Returns:
          masks: (B, 3 or 1, 4H, 4W) low-res mask logits.
          iou_pred: (B, 3 or 1) predicted IoU of each mask.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
            prepared=prepared,
        )
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, mask_slice], iou_pred[:, mask_slice]

    def prepare(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> ImageKeys:
        """Per-image work shared by all prompts with this (1, C, H, W) dense embedding."""
        src = image_embeddings + dense_prompt_embeddings[:1]
        prepared = self.transformer.prepare(src, image_pe)
        projections = prepare_projections(self.transformer, prepared.keys, prepared.key_pe)
        weight, bias = _conv_as_matmul(self._upscaling_layers()[0])
        projections["upscale"] = make_projection(
            prepared.keys, block_gains(self.transformer), weight, bias
        )
        prepared.projections = projections
        return prepared

    def predict_masks(
        self,
        *,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        prepared: ImageKeys | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All num_mask_tokens masks (B, T, 4H, 4W) and IoU predictions (B, T)."""
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1
        )  # (B, 1 + T + N, C)
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(
                f"image_embeddings must have batch 1 or {b} (one per prompt); "
                f"got {image_embeddings.shape[0]}"
            )
        _, _, h, w = image_pe.shape
        if prepared is None:
            # Broadcasting replaces a per-prompt copy of the image embedding.
            src = (image_embeddings + dense_prompt_embeddings).expand(b, -1, -1, -1)
            hs, keys = self.transformer(src, image_pe, tokens)
            weight, bias = _conv_as_matmul(self._upscaling_layers()[0])
            first = keys @ weight + bias  # (B, HW, 4 * C/4): the first transposed conv
        else:
            hs, levels = factored_transformer(self.transformer, tokens, prepared)
            first = project(levels, prepared.projections["upscale"])
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self._upscale_rest(first, h, w)  # (B, 16HW, C/8), channels last
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, T, C/8)
        masks = (hyper_in @ upscaled.transpose(1, 2)).reshape(b, -1, 4 * h, 4 * w)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred

    def _upscaling_layers(
        self,
    ) -> tuple[nn.ConvTranspose2d, LayerNorm2d, nn.Module, nn.ConvTranspose2d, nn.Module]:
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        return (
            cast(nn.ConvTranspose2d, conv1), cast(LayerNorm2d, norm), act1,
            cast(nn.ConvTranspose2d, conv2), act2,
        )  # fmt: skip

    def _upscale_rest(self, first: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """`output_upscaling` after its first conv's matmul (`first`: (B, HW, 4 * C/4)), with
        channels last throughout (no transposing copies): (B, 16HW, C/8)."""
        _, norm, act1, conv2, act2 = self._upscaling_layers()
        b = first.shape[0]
        x = _pixel_shuffle(first, h, w)  # (B, 4HW, C/4)
        x = act1(F.layer_norm(x, (norm.weight.numel(),), norm.weight, norm.bias, norm.eps))
        weight, bias = _conv_as_matmul(conv2)
        x = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).reshape(b, 4 * h * w, -1)
        return act2(_pixel_shuffle(x, 2 * h, 2 * w))


def _conv_as_matmul(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2, stride-2 transposed conv as a matmul on channels-last pixels: weight
    (C_in, 4 * C_out) with columns in (dy, dx, C_out) order, and its bias."""
    c_in, c_out = conv.weight.shape[:2]
    assert conv.bias is not None
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)


def _pixel_shuffle(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h*w, 4 * C) in (dy, dx, C) order -> (B, 2h * 2w, C), row-major pixels."""
    b, _, c4 = x.shape
    c = c4 // 4
    return x.reshape(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 4 * h * w, c)

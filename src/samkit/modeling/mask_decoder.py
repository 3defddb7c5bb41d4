"""Mask decoder: two-way transformer over prompt and image tokens, upscaling, hypernetworks."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .factored import (
    factored_transformer,
    make_projection,
    prepare_projections,
    project,
    select,
    two_way_blocks,
)
from .transformer import ImageKeys, TwoWayTransformer

# The factored path runs a large batch of prompts in chunks whose per-prompt image-sized
# tensors (HW x C floats each) total about this many bytes, so that they stay in the CPU's
# cache: on ViT-B, chunks of 4 prompts ran AMG's decoder ~30% faster than one batch of 64.
CACHE_BYTES = 16 * 1024 * 1024


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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for B prompts on one image (the official semantics: every submodule
        runs as itself, so hooks and replaced submodules take effect; training uses this).

        Arguments:
          image_embeddings: (1, C, H, W) embedding of the image, or (B, C, H, W), one per
            prompt (as MedSAM-style training passes a batch of images with one box each).
          image_pe: (1, C, H, W) positional encoding of the embedding grid.
          sparse_prompt_embeddings: (B, N, C) point and box tokens.
          dense_prompt_embeddings: (B, C, H, W) mask-prompt embedding.
          multimask_output: return the 3 multimask outputs instead of the single one.

        Returns:
          masks: (B, 3 or 1, 4H, 4W) low-res mask logits.
          iou_pred: (B, 3 or 1) predicted IoU of each mask.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
        )
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, mask_slice], iou_pred[:, mask_slice]

    @torch.no_grad()
    def predict_prepared(
        self,
        *,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        prepared: ImageKeys,
        multimask_output: bool,
        every_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s outputs for prompts without a mask prompt on an image whose
        prompt-independent work is `prepared` (`prepare`): the factored path (`factored.py`),
        in cache-sized chunks of prompts. The predictor and AMG use it; it reads the weights,
        not the submodules' forwards, and computes no gradients (training takes `forward`).
        every_mask: all num_mask_tokens outputs, the single-mask one first, in one pass."""
        if every_mask:
            mask_slice = slice(0, None)
        else:
            mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        outputs = [
            self._predict_factored(sparse, prepared, image_pe, mask_slice)
            for sparse in self._prompt_chunks(sparse_prompt_embeddings, image_pe)
        ]
        return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])

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
        blocks = two_way_blocks(self.transformer)
        projections["upscale"] = make_projection(prepared.keys, blocks, weight, bias)
        prepared.projections = projections
        return prepared

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All num_mask_tokens masks (B, T, 4H, 4W) and IoU predictions (B, T)."""
        tokens = self._tokens(sparse_prompt_embeddings)
        b = tokens.shape[0]
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(
                f"image_embeddings must have batch 1 or {b} (one per prompt); "
                f"got {image_embeddings.shape[0]}"
            )
        # Broadcasting replaces the official per-prompt copy of the image embedding.
        src = (image_embeddings + dense_prompt_embeddings).expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe, tokens)
        upscaled = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = self._hyper_in(hs)  # (B, T, C/8)
        masks = (hyper_in @ upscaled.flatten(2)).reshape(b, -1, *upscaled.shape[-2:])
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def _predict_factored(
        self,
        sparse_prompt_embeddings: torch.Tensor,
        prepared: ImageKeys,
        image_pe: torch.Tensor,
        mask_slice: slice,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`predict_masks` on the factored path for one chunk of prompts, only the outputs
        of `mask_slice` upscaled."""
        hs, levels = factored_transformer(
            self.transformer, self._tokens(sparse_prompt_embeddings), prepared
        )
        first = project(levels, prepared.projections["upscale"])
        _, _, h, w = image_pe.shape
        masks = self._upscale_and_project(first, self._hyper_in(hs)[:, mask_slice], h, w)
        return masks, self.iou_prediction_head(hs[:, 0, :])[:, mask_slice]

    @torch.no_grad()
    def predict_confident(
        self,
        *,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        prepared: ImageKeys,
        multimask_output: bool,
        min_iou: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`'s outputs for a prepared image, but masks only where the predicted IoU is
        above `min_iou`: the IoU head reads the tokens alone, so the upscaling (most of the
        decoder's work) runs only for prompts with at least one such output.

        Returns masks (K, 4H, 4W) low-res logits, iou_pred (B, 3 or 1) for every output, and
        index (K, 2): the (prompt, output) of each mask, in row-major order.
        """
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou_pred, index, start = [], [], [], 0
        for sparse in self._prompt_chunks(sparse_prompt_embeddings, image_pe):
            chunk_masks, chunk_iou, chunk_index = self._confident(
                image_pe, sparse, prepared, mask_slice, min_iou
            )
            chunk_index[:, 0] += start
            masks.append(chunk_masks)
            iou_pred.append(chunk_iou)
            index.append(chunk_index)
            start += len(sparse)
        return torch.cat(masks), torch.cat(iou_pred), torch.cat(index)

    def _prompt_chunks(
        self, sparse: torch.Tensor, image_pe: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Split a batch of prompts so that each chunk's image-sized tensors fit in a cache."""
        hw = image_pe.shape[-2] * image_pe.shape[-1]
        return sparse.split(max(1, CACHE_BYTES // (4 * hw * self.transformer_dim)))

    def _confident(
        self,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        prepared: ImageKeys,
        mask_slice: slice,
        min_iou: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict_confident` for one chunk of prompts."""
        tokens = self._tokens(sparse_prompt_embeddings)
        hs, levels = factored_transformer(self.transformer, tokens, prepared)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])[:, mask_slice]
        index = torch.nonzero(iou_pred > min_iou)
        _, _, h, w = image_pe.shape
        if len(index) == 0:
            return hs.new_zeros(0, 4 * h, 4 * w), iou_pred, index
        prompts, row = torch.unique(index[:, 0], return_inverse=True)
        hyper_in = self._hyper_in(hs[prompts])[:, mask_slice]
        first = project(select(levels, prompts), prepared.projections["upscale"])
        masks = self._upscale_and_project(first, hyper_in, h, w)
        return masks[row, index[:, 1]], iou_pred, index

    def _tokens(self, sparse_prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """The transformer's input tokens (B, 1 + T + N, C): IoU token, mask tokens, prompts."""
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        return torch.cat(
            [output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1
        )

    def _hyper_in(self, hs: torch.Tensor) -> torch.Tensor:
        """(B, T, C/8): each mask token through its hypernetwork MLP."""
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        return torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )

    def _upscaling_layers(
        self,
    ) -> tuple[nn.ConvTranspose2d, LayerNorm2d, nn.Module, nn.ConvTranspose2d, nn.Module]:
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        return (
            cast(nn.ConvTranspose2d, conv1), cast(LayerNorm2d, norm), act1,
            cast(nn.ConvTranspose2d, conv2), act2,
        )  # fmt: skip

    def _upscale_and_project(
        self, first: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        """The rest of `output_upscaling` after its first conv's matmul (`first`: (B, HW,
        4 * C/4)), then each mask token's dot product with the upscaled pixels: masks
        (B, T, 4h, 4w) for hyper_in (B, T, C/8).

        Every step is per pixel, so the upscaled features stay in the transposed convs' own
        order, (pixel, dy1, dx1, dy2, dx2, channel), and only the T-channel masks are put into
        image order at the end: no copies of the 16x larger features. (In chunks of pixel rows
        that stay in the CPU's cache this ran slower, not faster: 7.1 against 3.7 ms on ViT-B
        in 1 MB chunks.)
        """
        _, norm, act1, conv2, act2 = self._upscaling_layers()
        b, c4 = first.shape[0], norm.weight.numel()
        x = first.reshape(b, h * w * 4, c4)  # the first conv's 2x2 outputs of each pixel
        x = act1(F.layer_norm(x, (c4,), norm.weight, norm.bias, norm.eps))
        weight, bias = _conv_as_matmul(conv2)
        x = act2(torch.addmm(bias, x.reshape(-1, c4), weight))  # (B * 4HW, 4 * C/8)
        x = x.reshape(b, 16 * h * w, -1)  # (B, 16HW, C/8) in (i, j, dy1, dx1, dy2, dx2) order
        t = hyper_in.shape[1]
        masks = (hyper_in @ x.transpose(1, 2)).reshape(b, t, h, w, 2, 2, 2, 2)
        return masks.permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(b, t, 4 * h, 4 * w)


def _conv_as_matmul(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2, stride-2 transposed conv as a matmul on channels-last pixels: weight
    (C_in, 4 * C_out) with columns in (dy, dx, C_out) order, and its bias."""
    c_in, c_out = conv.weight.shape[:2]
    assert conv.bias is not None
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)

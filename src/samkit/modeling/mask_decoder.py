"""Mask decoder: two-way transformer over prompt and image tokens, upscaling, hypernetworks."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
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
            prompt has that same dense embedding (no mask prompt): the image-side work of
            the first block is then reused, and image_embeddings/dense are not read.

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
        return self.transformer.prepare(src, image_pe)

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
        _, c, h, w = image_pe.shape
        if prepared is None:
            # Broadcasting replaces a per-prompt copy of the image embedding.
            src = (image_embeddings + dense_prompt_embeddings).expand(b, -1, -1, -1)
            hs, src = self.transformer(src, image_pe, tokens)
        else:
            hs, src = self.transformer(image_embeddings, image_pe, tokens, prepared=prepared)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, T, C/8)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, uh * uw)).reshape(b, -1, uh, uw)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred

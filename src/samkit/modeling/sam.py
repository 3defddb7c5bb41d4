"""`Sam`: the image encoder, prompt encoder and mask decoder put together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    # the `samkit.text` encoder whose vectors the text head (prompt_encoder.text_projection or
    # text_grounder) was trained on; None for a model without one
    text_encoder: str | None = None
    # how predictors run it unless told otherwise: "fp32", "bf16" or "int8" (`samkit.load`)
    precision: str = "fp32"
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = PIXEL_MEAN,
        pixel_std: Sequence[float] = PIXEL_STD,
    ) -> None:
        """Segment Anything: predicts object masks from an image and prompts.

        `image_encoder` maps (B, 3, S, S) normalised images to (B, C, S/16, S/16) embeddings and
        exposes `img_size` (S). `pixel_mean`/`pixel_std` are in 0-255 RGB units.
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        # picks which of the model's own masks a phrase names (`samkit.text.grounding`);
        # None for a model without one (every official checkpoint)
        self.text_grounder: nn.Module | None = None

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def takes_text(self) -> bool:
        """Whether the model takes text: a text token (`prompt_encoder.text_projection`) or
        a text grounder (`text_grounder`)."""
        return self.prompt_encoder.text_projection is not None or self.text_grounder is not None

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """Predict masks end to end for a batch of images.

        Each record holds 'image' (3, H, W) already resized so its longest side is img_size,
        'original_size' (H0, W0), and optionally 'point_coords' (B, N, 2) (X, Y) with
        'point_labels' (B, N), 'boxes' (B, 4) XYXY, 'mask_inputs' (B, 1, 256, 256), all in the
        resized image's coordinates. Each output holds 'masks' (B, C, H0, W0) bool,
        'iou_predictions' (B, C) and 'low_res_logits' (B, C, 256, 256).
        """
        input_images = torch.stack([self.preprocess(rec["image"]) for rec in batched_input])
        image_embeddings = self.image_encoder(input_images)
        outputs = []
        for record, embedding in zip(batched_input, image_embeddings, strict=True):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res_masks, iou_predictions = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res_masks,
                input_size=tuple(record["image"].shape[-2:]),
                original_size=tuple(record["original_size"]),
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits (B, C, h, w) -> logits at the original image size (B, C, H0, W0):
        upscale to the padded input, cut the padding, then resize to the original."""
        masks = _resize(masks, (self.img_size, self.img_size))
        masks = masks[..., : input_size[0], : input_size[1]]
        if tuple(masks.shape[-2:]) == tuple(int(s) for s in original_size):
            return masks  # resizing to the same size is the identity
        return _resize(masks, tuple(int(s) for s in original_size))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise pixel values and pad (3, h, w) at the bottom/right to img_size square."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))


def _resize(masks: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of (B, C, h, w) logits, one channel at a time:
    for a few channels torch's CPU kernel goes through channels-last copies of the result,
    and resizing (B * C, 1, h, w) instead was 3x faster for 3 masks to 1024 x 1024. An
    upscaling by a whole factor on the CPU, outside autograd (the low-res logits to the
    model's input size), goes through OpenCV's bilinear resize, another 3-4x faster there,
    which gives torch's values to float rounding (~1e-6) at whole factors; at other scales its
    weights differ by up to ~1e-4 of the values, so those stay with torch."""
    b, c = masks.shape[:2]
    h, w = masks.shape[-2:]
    whole = size[0] % h == 0 and size[1] % w == 0 and size[0] // h == size[1] // w
    if (
        whole
        and masks.device.type == "cpu"
        and masks.dtype == torch.float32
        and not (masks.requires_grad and torch.is_grad_enabled())
    ):
        src = masks.detach().reshape(b * c, h, w).contiguous().numpy()
        resized = np.empty((b * c, *size), np.float32)
        for i in range(b * c):
            cv2.resize(src[i], (size[1], size[0]), dst=resized[i], interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(resized).reshape(b, c, *size)
    flat = masks.reshape(b * c, 1, h, w)
    out = F.interpolate(flat, size, mode="bilinear", align_corners=False)
    return out.reshape(b, c, *out.shape[-2:])

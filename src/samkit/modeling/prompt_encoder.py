"""Prompt encoder: points and boxes to sparse tokens, a low-res mask to a dense embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import MLP, LayerNorm2d

# Rows of `point_embeddings`: negative point, positive point, box top-left, box bottom-right.
NEG_POINT, POS_POINT, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Points are (B, N, 2) in (X, Y) pixels of the resized input image with labels (B, N):
    1 foreground, 0 background, -1 padding ("not a point"). Boxes are (B, 4) XYXY pixels.
    Masks are low-res logits (B, 1, 4*He, 4*We) where (He, We) is `image_embedding_size`.
    Text is (B, text_dim) vectors of a text encoder (`samkit.text`), which `text_projection`
    (present only with `text_dim`, or after `enable_text`) turns into one more sparse token.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
        *,
        text_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # NEG_POINT, POS_POINT, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self.text_projection: MLP | None = None
        if text_dim is not None:
            self.enable_text(text_dim)

    def enable_text(self, text_dim: int) -> None:
        """Add a fresh text projection: (B, text_dim) text vectors -> one (B, 1, embed_dim)
        sparse token, added to the point and box tokens (the SAM paper's text prompt)."""
        if text_dim < 1:
            raise ValueError(f"text_dim must be positive; got {text_dim}")
        device = self.no_mask_embed.weight.device
        self.text_projection = MLP(text_dim, self.embed_dim, self.embed_dim, 2).to(device)

    def _embed_text(self, text: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            raise ValueError(
                "this model has no text head (prompt_encoder.text_projection): it takes points, "
                "boxes and masks only; use a model trained for text (samkit finetune --text)"
            )
        first: nn.Linear = self.text_projection.layers[0]  # type: ignore[assignment]
        if text.ndim != 2 or text.shape[1] != first.in_features:
            raise ValueError(
                f"text must be (B, {first.in_features}) text-encoder vectors; "
                f"got {tuple(text.shape)}"
            )
        return self.text_projection(text.to(first.weight.dtype))[:, None]  # (B, 1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: (1, embed_dim, He, We)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + (labels == 0) * self._type_embedding(NEG_POINT)
        emb = emb + (labels == 1) * self._type_embedding(POS_POINT)
        return emb  # (B, N (+1), embed_dim)

    def _type_embedding(self, index: int) -> torch.Tensor:
        """(1, embed_dim) learned embedding of a point type (row of `point_embeddings`)."""
        embedding: nn.Embedding = self.point_embeddings[index]  # type: ignore[assignment]
        return embedding.weight

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)  # (B, 2 corners, XY)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_types = torch.cat(
            [self._type_embedding(BOX_TOP_LEFT), self._type_embedding(BOX_BOTTOM_RIGHT)]
        )
        return emb + corner_types  # (B, 2, embed_dim)

    def _batch_size(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        text: torch.Tensor | None = None,
    ) -> int:
        if text is not None:
            return text.shape[0]
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        *,
        text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse (B, N, embed_dim) and dense (B, embed_dim, He, We) embeddings. The
        text token, when `text` is given, comes last among the sparse ones."""
        bs = self._batch_size(points, boxes, masks, text)
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty((bs, 0, self.embed_dim), device=device)]
        if points is not None:
            coords, labels = points
            sparse.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        if text is not None:
            sparse.append(self._embed_text(text))
        sparse_embeddings = torch.cat(sparse, dim=1)
        if masks is not None:
            dense_embeddings = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense_embeddings = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse_embeddings, dense_embeddings


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al., Fourier features)."""

    positional_encoding_gaussian_matrix: torch.Tensor  # (2, num_pos_feats)

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1]^2, (..., 2) -> (..., 2 * num_pos_feats)."""
        matrix = self.positional_encoding_gaussian_matrix
        coords = (2 * coords - 1) @ matrix.to(coords.dtype)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an (H, W) grid: (C, H, W)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # (H, W, XY)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) (X, Y) pixels of an (H, W) image -> (B, N, C)."""
        scale = coords_input.new_tensor([image_size[1], image_size[0]])
        return self._pe_encoding((coords_input / scale).to(torch.float))

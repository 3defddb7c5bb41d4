"""Two-way transformer of the mask decoder: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock

if TYPE_CHECKING:
    from .factored import Projection


@dataclass
class ImageKeys:
    """The image side of the first block, identical for every prompt of one image when there
    is no mask prompt: computed once per image (`TwoWayTransformer.prepare`)."""

    keys: torch.Tensor  # (1, HW, C) image tokens (embedding + dense prompt embedding)
    key_pe: torch.Tensor  # (1, HW, C) their positional encoding
    k: torch.Tensor  # (nh, hd, HW) token->image keys k_proj(keys + key_pe), per head
    v: torch.Tensor  # (nh, HW, hd) token->image values v_proj(keys), per head
    q: torch.Tensor  # (nh, hd, HW) image->token queries q_proj(keys + key_pe), per head
    # per-image parts of the later image-side projections (`factored.prepare_projections`)
    projections: dict[str, Projection] = field(default_factory=dict)


def key_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(heads, hd, HW) from (1, HW, heads * hd): what queries of every head multiply fastest."""
    return x.reshape(x.shape[1], heads, -1).permute(1, 2, 0).contiguous()


def value_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(heads, HW, hd) from (1, HW, heads * hd): what attention weights multiply fastest."""
    return x.reshape(x.shape[1], heads, -1).transpose(0, 1).contiguous()


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks, then a final token-to-image attention.

    Image tokens come in as (B, C, H, W) with their positional encoding of the same shape;
    prompt tokens as (B, N, C). Returns (queries (B, N, C), keys (B, H*W, C)).
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def prepare(self, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> ImageKeys:
        """Prompt-independent work of the first block for one (1, C, H, W) image."""
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()  # (1, HW, C)
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()  # (1, HW, C)
        first: TwoWayAttentionBlock = self.layers[0]  # type: ignore[assignment]
        k = keys + key_pe
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        return ImageKeys(
            keys=keys,
            key_pe=key_pe,
            k=key_heads(t2i.k_proj(k), t2i.num_heads),
            v=value_heads(t2i.v_proj(keys), t2i.num_heads),
            q=key_heads(i2t.q_proj(k), i2t.num_heads),
        )

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain path (training, mask prompts, export); prompts without a mask on a
        prepared image take `factored.factored_transformer` instead."""
        queries = point_embedding
        keys = image_embedding.flatten(2).transpose(1, 2)  # (B, HW, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)  # (B or 1, HW, C)
        for layer in self.layers:
            queries, keys = layer(
                queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe
            )
        attn_out = self.final_attn_token_to_image(
            q=queries + point_embedding, k=keys + key_pe, v=keys
        )
        queries = self.norm_final_attn(queries + attn_out)
        return queries, keys


class TwoWayAttentionBlock(nn.Module):
    """Self-attention on tokens, token->image cross attention, MLP on tokens, image->token
    cross attention. The first block adds no positional encoding to its self-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim=embedding_dim, num_heads=num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim=embedding_dim, mlp_dim=mlp_dim, act=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = self.self_attend(queries, query_pe)
        q = queries + query_pe
        k = keys + key_pe
        queries = self.update_tokens(queries, self.cross_attn_token_to_image(q=q, k=k, v=keys))
        q = queries + query_pe
        attn_out = self.cross_attn_image_to_token(q=k, k=q, v=queries)
        keys = self.norm4(keys + attn_out)
        return queries, keys

    def self_attend(self, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        """The tokens' self-attention and first norm."""
        if self.skip_first_layer_pe:
            return self.norm1(self.self_attn(q=queries, k=queries, v=queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q=q, k=q, v=queries))

    def update_tokens(self, queries: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """The tokens after their attention to the image (`attn_out`): norm, MLP, norm."""
        queries = self.norm2(queries + attn_out)
        return self.norm3(queries + self.mlp(queries))


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by `downsample_rate`."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must divide embedding_dim // downsample_rate "
                f"({self.internal_dim})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(
            1, 2
        )  # (B, nh, N, hd)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.q_proj(q))
        k = self.split_heads(self.k_proj(k))
        v = self.split_heads(self.v_proj(v))
        return self.attend(q, k, v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention over projected heads (B, nh, N, hd), then the output projection."""
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, Nq, hd)
        b, nh, n, hd = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, nh * hd))

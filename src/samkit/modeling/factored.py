"""The mask decoder's image side, factored through the prompt tokens (prompts without a mask).

Inside the two-way transformer the image tokens change only by image->token attention, whose
output for one prompt is `a @ m`: attention weights `a` (HW x heads*tokens) times `m`
(heads*tokens x C), a rank of 56 for SAM's 8 heads and 7 tokens against 256 channels. The
LayerNorm after it is a per-row shift and scale. So any linear map W of the image tokens after
block i, `keys_i @ W`, is a per-row scaling of `image @ W'` (W' = W times the LayerNorm gains,
computed once per image) plus low-rank terms per prompt. For ViT-B this cuts the decoder's
per-prompt work from ~2.7 to ~1.1 GFLOP; the algebra is exact, only float rounding differs.

Used when every prompt shares the image's dense embedding (no mask prompt); `MaskDecoder`
falls back to the plain path otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .transformer import Attention, ImageKeys, TwoWayAttentionBlock, TwoWayTransformer


@dataclass
class Projection:
    """`keys_level @ weight + const` for a prompt, from per-image parts."""

    level: int  # reads the image tokens after this many blocks
    weight: torch.Tensor  # (C, N)
    pre: torch.Tensor  # (1, HW, N): image tokens @ (gains of blocks 1..level * weight)
    const: torch.Tensor  # (1, HW, N) or (N,): positional encoding @ weight + bias


@dataclass
class _Level:
    """Per prompt, the image tokens after one block: LayerNorm(previous + a @ m + bias)."""

    # (B, HW, R + 2): the image->token attention weights (heads side by side), then a column
    # of ones and one of -mean, so that one batched matmul adds every low-rank and per-row term
    a_ext: torch.Tensor
    m: torch.Tensor  # (B, R, C) token values through the output projection
    bias: torch.Tensor  # (C,) the output projection's bias
    rstd: torch.Tensor  # (B, HW, 1) 1 / std of previous + a @ m + bias
    norm: nn.LayerNorm


def make_projection(
    image: torch.Tensor,
    gains: Sequence[torch.Tensor],
    linear_weight: torch.Tensor,
    const: torch.Tensor,
) -> Projection:
    """A projection of the image tokens after len(gains) blocks; gains are those blocks'
    LayerNorm weights, linear_weight is (C, N)."""
    scaled = linear_weight
    for g in gains:
        scaled = g[:, None] * scaled
    return Projection(len(gains), linear_weight, image @ scaled, const)


def project(levels: list[_Level], p: Projection) -> torch.Tensor:
    """(B, HW, N) = keys_{p.level} @ p.weight + p.const for every prompt."""
    chain = [p.weight]  # chain[k]: the weight that the tokens after block level-k meet
    for lv in reversed(levels[: p.level]):
        chain.append(lv.norm.weight[:, None] * chain[-1])
    y = p.pre  # the image tokens @ chain[level]
    for i, lv in enumerate(levels[: p.level], start=1):
        w, gw = chain[p.level - i], chain[p.level - i + 1]  # gw = gains_i * w
        b = lv.m.shape[0]
        rows = torch.cat(
            [lv.m @ gw, (lv.bias @ gw).expand(b, 1, -1), (lv.norm.weight @ w).expand(b, 1, -1)], 1
        )  # against a_ext's columns: a, 1, -mean
        inner = torch.baddbmm(y, lv.a_ext, rows)  # y + a @ m @ gw + bias @ gw - mean * (g @ w)
        shift = lv.norm.bias @ w
        y = torch.addcmul(shift + p.const if i == p.level else shift, lv.rstd, inner)
    return y  # the last step's y is keys_level @ weight + const


def select(levels: list[_Level], index: torch.Tensor) -> list[_Level]:
    """The factored image tokens of some prompts only (a 1-D index into the batch)."""
    return [replace(lv, a_ext=lv.a_ext[index], m=lv.m[index], rstd=lv.rstd[index]) for lv in levels]


def _image_to_token(
    attn: Attention, q_img: torch.Tensor, tokens_q: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image->token attention as (a, m): output = a @ m + out_proj.bias."""
    k = attn.split_heads(attn.k_proj(tokens_q))  # (B, nh, N, hd)
    v = attn.split_heads(attn.v_proj(tokens))
    b, nh, n, hd = k.shape
    # Tokens-by-pixels scores, normalised along the tokens axis: softmax over a last axis of
    # only N (~7) entries is many times slower on a CPU than over a middle one.
    scores = (k * hd**-0.5) @ q_img.transpose(-1, -2)  # (B, nh, N, HW)
    a = torch.softmax(scores, dim=-2).reshape(b, nh * n, -1).transpose(1, 2)  # (B, HW, R) view
    out_w = attn.out_proj.weight.t().reshape(nh, hd, -1)  # (nh, hd, C)
    m = (v @ out_w).reshape(b, nh * n, -1)
    return a, m


def _blocks(transformer: TwoWayTransformer) -> list[TwoWayAttentionBlock]:
    return list(transformer.layers)  # type: ignore[arg-type]


def block_gains(transformer: TwoWayTransformer) -> list[torch.Tensor]:
    """The LayerNorm weights that end each block's image side."""
    return [blk.norm4.weight for blk in _blocks(transformer)]


def prepare_projections(
    transformer: TwoWayTransformer, keys: torch.Tensor, key_pe: torch.Tensor
) -> dict[str, Projection]:
    """The per-image parts of every image-side projection after the first block."""
    blocks = _blocks(transformer)
    gains = block_gains(transformer)
    out: dict[str, Projection] = {}

    def add(name: str, level: int, linear: nn.Linear, with_pe: bool) -> None:
        w = linear.weight.t()
        const = key_pe @ w + linear.bias if with_pe else linear.bias
        out[name] = make_projection(keys, gains[:level], w, const)

    for j in range(1, len(blocks)):
        t2i, i2t = blocks[j].cross_attn_token_to_image, blocks[j].cross_attn_image_to_token
        add(f"{j}.t2i_k", j, t2i.k_proj, True)
        add(f"{j}.t2i_v", j, t2i.v_proj, False)
        add(f"{j}.i2t_q", j, i2t.q_proj, True)
    final = transformer.final_attn_token_to_image
    add("final_k", len(blocks), final.k_proj, True)
    add("final_v", len(blocks), final.v_proj, False)
    return out


def factored_transformer(
    transformer: TwoWayTransformer, point_embedding: torch.Tensor, prepared: ImageKeys
) -> tuple[torch.Tensor, list[_Level]]:
    """`TwoWayTransformer.forward` for B prompts on one prepared image: the tokens (B, N, C)
    and the image tokens in factored form (for `project`)."""
    queries, qpe = point_embedding, point_embedding
    proj = prepared.projections
    keys = prepared.keys  # the explicit image tokens of the current level
    levels: list[_Level] = []
    blocks = _blocks(transformer)
    for j, blk in enumerate(blocks):
        queries = blk.self_attend(queries, qpe)
        t2i, i2t = blk.cross_attn_token_to_image, blk.cross_attn_image_to_token
        q = queries + qpe
        if j == 0:
            attn_out = t2i.attend_shared(q, prepared.k, prepared.v)
        else:
            k = t2i.split_heads(project(levels, proj[f"{j}.t2i_k"]))
            v = t2i.split_heads(project(levels, proj[f"{j}.t2i_v"]))
            attn_out = t2i.attend(t2i.split_heads(t2i.q_proj(q)), k, v)
        queries = blk.update_tokens(queries, attn_out)
        q_img = prepared.q if j == 0 else i2t.split_heads(project(levels, proj[f"{j}.i2t_q"]))
        a, m = _image_to_token(i2t, q_img, queries + qpe, queries)
        x = torch.baddbmm(keys + i2t.out_proj.bias, a, m)
        norm = blk.norm4
        keys, mean, rstd = torch.native_layer_norm(
            x, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )
        a_ext = torch.cat([a, torch.ones_like(mean), -mean], dim=-1)
        levels.append(_Level(a_ext, m, i2t.out_proj.bias, rstd, norm))
    final = transformer.final_attn_token_to_image
    k = final.split_heads(project(levels, proj["final_k"]))
    v = final.split_heads(project(levels, proj["final_v"]))
    attn_out = final.attend(final.split_heads(final.q_proj(queries + qpe)), k, v)
    return transformer.norm_final_attn(queries + attn_out), levels

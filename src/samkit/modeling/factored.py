"""The mask decoder's image side, factored through the prompt tokens (prompts without a mask).

Inside the two-way transformer the image tokens change only by image->token attention, whose
output for one prompt is `a @ m`: attention weights `a` (HW x heads*tokens) times `m`
(heads*tokens x C), a rank of 56 for SAM's 8 heads and 7 tokens against 256 channels. The
LayerNorm after it is a per-row shift and scale. So any linear map W of the image tokens after
block i, `keys_i @ W`, is a per-row scaling of `image @ W'` (W' = W times the LayerNorm gains,
computed once per image) plus low-rank terms per prompt. For ViT-B this cuts the decoder's
per-prompt work from ~2.7 to ~1.1 GFLOP; the algebra is exact, only float rounding differs.

The tokens' attention to the image needs its keys only through the tokens' queries and its
values only through the attention weights, so those projections are never made: every term
of one meets the queries (or weights) first, and only (heads*tokens x HW) tensors are formed
(`scores_projected`, `values_projected`). Only the upscaling's input is projected in full.

Used when every prompt shares the image's dense embedding (no mask prompt); `MaskDecoder`
falls back to the plain path otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .transformer import (
    Attention,
    ImageKeys,
    TwoWayAttentionBlock,
    TwoWayTransformer,
    key_heads,
    value_heads,
)


@dataclass
class _Step:
    """What one block adds to a projection: y -> rstd * (y + a_ext @ [m @ gw; tail]) + shift,
    where everything but the prompt's token values m depends on the weights alone."""

    gw: torch.Tensor  # (C, N): the weight the block's token values meet
    tail: torch.Tensor  # (2, N): against a_ext's columns of ones and of -mean
    shift: torch.Tensor  # (N,), or (1, HW, N) with the projection's constant on its last step


@dataclass
class Projection:
    """`keys_level @ weight + const` for a prompt, from per-image parts."""

    # image tokens @ (gains of blocks 1..level * weight): (1, HW, N), or per head as
    # `key_heads` / `value_heads` lay it out for attention (so is a per-pixel last shift)
    pre: torch.Tensor
    steps: list[_Step]  # one per block up to the level


@dataclass
class _Level:
    """Per prompt, the image tokens after one block: LayerNorm(previous + a @ m + bias)."""

    # (B, HW, R + 2): the image->token attention weights (heads side by side), then a column
    # of ones and one of -mean, so that one batched matmul adds every low-rank and per-row term
    a_ext: torch.Tensor
    m: torch.Tensor  # (B, R, C) token values through the output projection
    rstd: torch.Tensor  # (B, HW, 1) 1 / std of previous + a @ m + bias


def make_projection(
    image: torch.Tensor,
    blocks: Sequence[TwoWayAttentionBlock],
    linear_weight: torch.Tensor,
    const: torch.Tensor,
    layout: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Projection:
    """A projection (C, N) `linear_weight` of the image tokens after `blocks`, whose
    weight-only factors are computed here, once per image, rather than for every prompt;
    `layout` rearranges its (1, HW, N) per-image tensors for the one who reads them."""
    arrange = layout or (lambda x: x)
    level = len(blocks)
    chain = [linear_weight]  # chain[k]: the weight that the tokens after block level-k meet
    for blk in reversed(blocks):
        chain.append(blk.norm4.weight[:, None] * chain[-1])
    steps = []
    for i, blk in enumerate(blocks, start=1):
        w, gw = chain[level - i], chain[level - i + 1]  # gw = gains_i * w
        bias = blk.cross_attn_image_to_token.out_proj.bias
        shift = blk.norm4.bias @ w
        tail = torch.stack([bias @ gw, blk.norm4.weight @ w])
        if i == level:
            shift = shift + const
        steps.append(_Step(gw, tail, arrange(shift) if shift.dim() == 3 else shift))
    pre = image @ chain[level]
    return Projection(arrange(pre if steps else pre + const), steps)


def project(levels: list[_Level], p: Projection) -> torch.Tensor:
    """(B, HW, N) = keys_level @ weight + const for every prompt. Without autograd: after
    the first step every update is in place."""
    y = p.pre
    for i, (lv, step) in enumerate(zip(levels[: len(p.steps)], p.steps, strict=True)):
        rows = _rows(lv, step)
        # y + a @ m @ gw + bias @ gw - mean * (g @ w): the cached `pre` is copied, once
        y = torch.baddbmm(y, lv.a_ext, rows) if i == 0 else y.baddbmm_(lv.a_ext, rows)
        y = torch.addcmul(step.shift, lv.rstd, y, out=y)
    return y


def _rows(lv: _Level, step: _Step) -> torch.Tensor:
    """(B, R + 2, N): what a block adds to a projection, against its a_ext's columns."""
    return torch.cat([lv.m @ step.gw, step.tail.expand(lv.m.shape[0], -1, -1)], 1)


def scores_projected(levels: list[_Level], p: Projection, qh: torch.Tensor) -> torch.Tensor:
    """(B, nh, n, HW): per head, queries qh (B, nh, n, hd) against the heads of the
    projection (B, HW, nh * hd), through (nh * n, HW)-sized tensors only: every term of the
    projection is linear in its columns, so the queries go into each term instead."""
    b, nh, n, _ = qh.shape
    y = _per_head(qh, p.pre).reshape(b, nh * n, -1)
    if not p.steps:  # one image's own keys
        return y.view(b, nh, n, -1)
    qbd = _block_diagonal(qh)  # (B, nh * hd, nh * n)
    for lv, step in zip(levels[: len(p.steps)], p.steps, strict=True):
        y.baddbmm_((_rows(lv, step) @ qbd).transpose(1, 2), lv.a_ext.transpose(1, 2))
        if step.shift.dim() == 3:  # a per-pixel shift
            shift = _per_head(qh, step.shift).reshape(b, nh * n, -1)
        else:
            shift = (qbd.transpose(1, 2) @ step.shift)[..., None]
        y = torch.addcmul(shift, lv.rstd.transpose(1, 2), y, out=y)
    return y.view(b, nh, n, -1)


def values_projected(levels: list[_Level], p: Projection, weights: torch.Tensor) -> torch.Tensor:
    """(B, nh, n, hd): per head, attention weights (B, nh, n, HW) times the heads of the
    projection (B, HW, nh * hd), through (nh * n, HW)-sized tensors only; the last block's
    terms come first, each earlier block's weighted by the later blocks' 1/std."""
    b, nh, n, _ = weights.shape
    w = weights.reshape(b, nh * n, -1)
    small = None  # (B, nh * n, nh * hd): every head's terms against every head's channels
    for lv, step in reversed(list(zip(levels[: len(p.steps)], p.steps, strict=True))):
        term = w.sum(-1, keepdim=True) * step.shift  # values have no positional encoding
        small = term if small is None else small + term
        w = w * lv.rstd.transpose(1, 2)
        small.baddbmm_(w @ lv.a_ext, _rows(lv, step))
    out = _per_head_values(w.view(b, nh, n, -1), p.pre)
    if small is None:
        return out
    hd = out.shape[-1]
    own = small.view(b, nh, n, nh, hd).diagonal(dim1=1, dim2=3)  # (B, n, hd, nh)
    return out + own.permute(0, 3, 1, 2)


def _per_head(qh: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(B, nh, n, HW): queries qh (B, nh, n, hd) against `key_heads` (nh, hd, HW), one
    matmul per head for all prompts."""
    b, nh, n, hd = qh.shape
    out = qh.transpose(0, 1).reshape(nh, b * n, hd) @ keys
    return out.view(nh, b, n, -1).transpose(0, 1)


def _per_head_values(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(B, nh, n, hd): weights w (B, nh, n, HW) times `value_heads` (nh, HW, hd)."""
    b, nh, n, _ = w.shape
    out = w.transpose(0, 1).reshape(nh, b * n, -1) @ values
    return out.view(nh, b, n, -1).transpose(0, 1)


def attend_projected(
    attn: Attention, q: torch.Tensor, levels: list[_Level], pk: Projection, pv: Projection
) -> torch.Tensor:
    """`attn(q, k, v)` for query tokens q (B, n, C) whose keys and values are projections of
    the image tokens: the scores need the keys only through the tokens' queries and the
    output needs the values only through the attention weights, so neither (B, HW, C/2)
    projection is made. (Projections without steps are one image's keys and values, shared
    by every prompt, as the first block's.)"""
    qh = attn.split_heads(attn.q_proj(q))  # (B, nh, n, hd)
    b, nh, n, hd = qh.shape
    weights = torch.softmax(scores_projected(levels, pk, qh * hd**-0.5), dim=-1)
    out = values_projected(levels, pv, weights)  # (B, nh, n, hd)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, nh * hd))


def _block_diagonal(x: torch.Tensor) -> torch.Tensor:
    """(B, nh * hd, nh * n) from per-head (B, nh, n, hd): head h's (hd, n) block on the
    diagonal, zeros elsewhere."""
    b, nh, n, hd = x.shape
    eye = torch.eye(nh, dtype=x.dtype, device=x.device)
    return torch.einsum("bhtd,hg->bhdgt", x, eye).reshape(b, nh * hd, nh * n)


def select(levels: list[_Level], index: torch.Tensor) -> list[_Level]:
    """The factored image tokens of some prompts only (a 1-D index into the batch)."""
    return [replace(lv, a_ext=lv.a_ext[index], m=lv.m[index], rstd=lv.rstd[index]) for lv in levels]


def _image_to_token(
    attn: Attention,
    q_img: torch.Tensor | tuple[list[_Level], Projection],
    tokens_q: torch.Tensor,
    tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image->token attention as (a, m): output = a @ m + out_proj.bias. q_img: the image
    queries as `key_heads` (nh, hd, HW), or the levels and projection that make them."""
    k = attn.split_heads(attn.k_proj(tokens_q))  # (B, nh, N, hd)
    v = attn.split_heads(attn.v_proj(tokens))
    b, nh, n, hd = k.shape
    if isinstance(q_img, tuple):  # the factored queries
        scores = scores_projected(*q_img, k * hd**-0.5)
    else:
        scores = _per_head(k * hd**-0.5, q_img)  # (B, nh, N, HW)
    # Tokens-by-pixels scores, normalised along the tokens axis: softmax over a last axis of
    # only N (~7) entries is many times slower on a CPU than over a middle one.
    a = torch.softmax(scores, dim=-2).reshape(b, nh * n, -1).transpose(1, 2)  # (B, HW, R)
    out_w = attn.out_proj.weight.t().reshape(nh, hd, -1)  # (nh, hd, C)
    m = (v @ out_w).reshape(b, nh * n, -1)
    return a, m


def two_way_blocks(transformer: TwoWayTransformer) -> list[TwoWayAttentionBlock]:
    """The transformer's blocks, typed (its ModuleList holds nothing else)."""
    return list(transformer.layers)  # type: ignore[arg-type]


def prepare_projections(
    transformer: TwoWayTransformer, keys: torch.Tensor, key_pe: torch.Tensor
) -> dict[str, Projection]:
    """The per-image parts of every image-side projection after the first block."""
    blocks = two_way_blocks(transformer)
    out: dict[str, Projection] = {}

    def add(name: str, level: int, attn: Attention, linear: nn.Linear, role: str) -> None:
        w = linear.weight.t()
        const = key_pe @ w + linear.bias if role == "keys" else linear.bias
        heads = key_heads if role == "keys" else value_heads
        layout = functools.partial(heads, heads=attn.num_heads)
        out[name] = make_projection(keys, blocks[:level], w, const, layout)

    for j in range(1, len(blocks)):
        t2i, i2t = blocks[j].cross_attn_token_to_image, blocks[j].cross_attn_image_to_token
        add(f"{j}.t2i_k", j, t2i, t2i.k_proj, "keys")
        add(f"{j}.t2i_v", j, t2i, t2i.v_proj, "values")
        add(f"{j}.i2t_q", j, i2t, i2t.q_proj, "keys")  # queries of the image, keyed by tokens
    final = transformer.final_attn_token_to_image
    add("final_k", len(blocks), final, final.k_proj, "keys")
    add("final_v", len(blocks), final, final.v_proj, "values")
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
    blocks = two_way_blocks(transformer)
    for j, blk in enumerate(blocks):
        queries = blk.self_attend(queries, qpe)
        t2i, i2t = blk.cross_attn_token_to_image, blk.cross_attn_image_to_token
        q = queries + qpe
        if j == 0:
            shared_k, shared_v = Projection(prepared.k, []), Projection(prepared.v, [])
            attn_out = attend_projected(t2i, q, [], shared_k, shared_v)
        else:
            attn_out = attend_projected(t2i, q, levels, proj[f"{j}.t2i_k"], proj[f"{j}.t2i_v"])
        queries = blk.update_tokens(queries, attn_out)
        q_img = prepared.q if j == 0 else (levels, proj[f"{j}.i2t_q"])
        a, m = _image_to_token(i2t, q_img, queries + qpe, queries)
        b, hw, r = a.shape
        a_ext = torch.empty(b, hw, r + 2, dtype=a.dtype, device=a.device)
        a_ext[..., :r] = a
        a_ext[..., r] = 1.0
        # keys + a @ m + out_proj.bias, the bias through a_ext's column of ones
        m_bias = torch.cat([m, i2t.out_proj.bias.expand(b, 1, -1)], 1)
        if j == 0:  # the prepared keys stay as they are
            x = torch.baddbmm(keys, a_ext[..., : r + 1], m_bias)
        else:
            x = keys.baddbmm_(a_ext[..., : r + 1], m_bias)  # the previous block's fresh output
        norm = blk.norm4
        # (the last block needs only the statistics, not the normalised tokens, but LayerNorm
        # gave them ~9x faster than var_mean)
        keys, mean, rstd = torch.native_layer_norm(
            x, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )
        a_ext[..., r + 1 :] = -mean
        levels.append(_Level(a_ext, m, rstd))
    final = transformer.final_attn_token_to_image
    attn_out = attend_projected(final, queries + qpe, levels, proj["final_k"], proj["final_v"])
    return transformer.norm_final_attn(queries + attn_out), levels

"""Is skipping the window padding worth it? One windowed block of an image encoder at 1024 px
in samkit's (the official) order (zero-pad the normed 64 x 64 grid to 70 x 70, qkv and proj on
all 4,900 tokens) against a padding-free order (qkv on the 4,096 real tokens, the padded qkv
grid filled with the qkv bias, which is a zero token's qkv; proj after the crop), same
weights, same input. Both give the same output; the question is the time.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_window_padding.py --variant vit_b
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from samkit.build import sam_model_registry, seeded_init_
from samkit.modeling.image_encoder import Block, decomposed_rel_pos_bias, window_unpartition


def padding_free(block: Block, x: torch.Tensor) -> torch.Tensor:
    """The block's attention branch with qkv and proj on the real tokens only."""
    ws, attn = block.window_size, block.attn
    b, h, w, _ = x.shape
    qkv = attn.qkv(block.norm1(x))  # (B, H, W, 3C)
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    grid = attn.qkv.bias.expand(b, hp, wp, qkv.shape[-1]).clone()
    grid[:, :h, :w] = qkv
    windows = grid.view(b, hp // ws, ws, wp // ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    q, k, v = windows.reshape(
        -1, ws * ws, 3, attn.num_heads, qkv.shape[-1] // (3 * attn.num_heads)
    ).permute(2, 0, 3, 1, 4)
    bias = decomposed_rel_pos_bias(q, attn.rel_pos_h, attn.rel_pos_w, (ws, ws), (ws, ws))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2)
    out = window_unpartition(
        out.reshape(-1, ws, ws, out.shape[-2] * out.shape[-1]), ws, (hp, wp), (h, w)
    )
    y = x + attn.proj(out)
    return y + block.mlp(block.norm2(y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    blocks = list(seeded_init_(sam_model_registry[args.variant]()).image_encoder.blocks)
    block = next(b for b in blocks if b.window_size > 0).eval()
    x = torch.randn(1, 64, 64, block.norm1.normalized_shape[0])
    fns = {
        "samkit / official order (pad first)": lambda: block(x),
        "padding-free": lambda: padding_free(block, x),
    }
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    diff = float((block(x) - padding_free(block, x)).abs().max())
    medians = [statistics.median(t) for t in times.values()]
    windowed = sum(b.window_size > 0 for b in blocks)
    print(f"{args.variant}: {windowed} of {len(blocks)} blocks windowed, {args.threads} threads")
    print("| order | one windowed block (median) |\n|---|---|")
    for name, t in zip(times, medians, strict=True):
        print(f"| {name} | {t * 1e3:.1f} ms |")
    print(
        f"padding-free / pad first: {medians[0] / medians[1]:.3f}x; max abs difference {diff:.1e}"
    )


if __name__ == "__main__":
    main()

"""`SamPredictor.set_image` with an `EmbeddingCache`: a cold pass against memory and disk hits.

For each model, in one run and on one image: `set_image` without a cache (the peer: the image
encoder every time), the first `set_image` with a cache (the encoder, plus hashing the input
and writing the embedding to disk), a second `set_image` on the same predictor (a memory hit)
and `set_image` through a fresh cache object on the same folder (a disk hit: read, check, and
recompute the decoder's per-image state). Each ratio is the peer's median over that row's
median. Also checks that every path gives the peer's masks bit for bit, and prints the CPU
model (lscpu) and the one-off cost of the model's weights digest.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_embedding_cache.py \\
        --models samkit_default,vit_b --repeats 3

A registry variant whose weights are not bundled (vit_b, vit_l, vit_h, vit_t) is built with
seeded weights (`samkit.build.seeded_init_`): the time depends on the architecture only.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_serve import scene  # this script's folder is on sys.path: the same test image


def cpu_model() -> str:
    """lscpu's model name and model number, and whether the CPU has native bf16 matmuls."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (
        f"{fields.get('Model name', '?').strip()} (model {fields.get('Model', '?').strip()}; "
        f"{', '.join(native) if native else 'no AVX-512 BF16 or AMX'})"
    )


def build(name: str) -> torch.nn.Module:
    from samkit import load
    from samkit.build import sam_model_registry, seeded_init_
    from samkit.loading import BUNDLED, SEEDED_VARIANTS

    if name in BUNDLED or name in SEEDED_VARIANTS or name not in sam_model_registry:
        return load(name)
    return seeded_init_(sam_model_registry[name](), seed=0).eval()


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, image: np.ndarray, repeats: int) -> None:
    from samkit import SamPredictor
    from samkit.embedding_cache import EmbeddingCache, model_digest

    start = time.perf_counter()
    model = build(name)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    model_digest(model)
    digest = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"\n{name}: {n_params:.1f}M parameters, built in {loaded:.1f} s, digest {digest:.2f} s")

    point = np.array([[image.shape[1] * 0.3, image.shape[0] * 0.4]])

    def masks(p: SamPredictor) -> np.ndarray:
        return p.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)[0]

    peer = SamPredictor(model)
    peer.set_image(image)  # warm-up
    want = masks(peer)
    hits = max(repeats, 5)  # hits are quick: a few more of them
    rows = {"no cache (peer)": [seconds(lambda: peer.set_image(image)) for _ in range(repeats)]}
    with tempfile.TemporaryDirectory() as folder:
        cold = []
        for i in range(repeats):  # a new folder each time: always a miss
            p = SamPredictor(model, cache=EmbeddingCache(1 << 30, Path(folder) / str(i)))
            cold.append(seconds(functools.partial(p.set_image, image)))
        assert np.array_equal(masks(p), want)
        rows["cache miss (encoder + hash + disk write)"] = cold
        rows["memory hit"] = [seconds(lambda: p.set_image(image)) for _ in range(hits)]
        assert np.array_equal(masks(p), want)
        disk = []
        for _ in range(hits):  # a fresh cache object each time: nothing in memory
            q = SamPredictor(model, cache=EmbeddingCache(0, Path(folder) / "0"))
            disk.append(seconds(functools.partial(q.set_image, image)))
        assert np.array_equal(masks(q), want)
        rows["disk hit (fresh cache object)"] = disk
    base = statistics.median(rows["no cache (peer)"])
    print("| set_image | median | runs | peer / this |")
    print("|---|---:|---:|---:|")
    for label, runs in rows.items():
        median = statistics.median(runs)
        shown = f"{median * 1e3:.1f} ms" if median < 1 else f"{median:.2f} s"
        print(f"| {label} | {shown} | {len(runs)} | {base / median:.1f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="samkit_default,vit_b", help="comma-separated")
    ap.add_argument("--size", default="1024x768", help="image WxH (default 1024x768)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads")
    print(f"image {width} x {height}; every path's masks equal the peer's bit for bit")
    for name in args.models.split(","):
        bench(name, scene(width, height), args.repeats)


if __name__ == "__main__":
    main()

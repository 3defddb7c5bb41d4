"""Resident memory of `samkit serve`'s engine over many images, against its cache cap.

Embeds `--images` distinct synthetic images through `samkit.serve.engine.Engine` with the
cache capped at `--cache-mb`, as the annotator does when one opens image after image, and
prints the process's resident memory (RSS) every `--every` images, with the bytes the cache
counts, the images it holds and the bytes those images really keep (every tensor, as
`Engine.embedding_bytes` counts them). The peer, run in a fresh process of the same command,
counts the embedding (`features`) only, as the cache did before: its RSS keeps growing past
the cap until the count catches up, at about 10x the cap for samkit_default.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_serve_memory.py \\
        --model samkit_default --images 1000 --cache-mb 256

`--model` takes a name or a weights file; a registry variant without weights is built with
seeded weights (memory depends on the architecture only). Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from bench_serve import build  # this script's folder is on sys.path: the same loader


def rss_mib() -> float:
    """This process's resident memory now (MiB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def scene(i: int, width: int, height: int) -> np.ndarray:
    """A distinct image for each i: noise and a coloured box at a place of its own."""
    rng = np.random.default_rng(i)
    img = rng.integers(80, 170, size=(height, width, 3), dtype=np.uint8)
    y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
    img[y : y + height // 3, x : x + width // 3] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def measure(args: argparse.Namespace) -> None:
    """One accounting, in this process: the table rows."""
    from samkit.serve.cache import ByteLRU
    from samkit.serve.engine import Engine

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    engine = Engine(build(args.model), cache_bytes=args.cache_mb << 20)
    if args.count == "features":  # the accounting before: the embedding alone
        engine.embeddings = ByteLRU(args.cache_mb << 20, lambda e: e.features.nbytes)
    first = scene(0, width, height)
    engine.embed("warm-up", lambda: first)  # model and allocator warmed up
    per_image = Engine(engine.model).embedding_bytes(engine.embeddings.get("warm-up"))
    engine.embeddings.discard("warm-up")
    start = rss_mib()
    print(
        f"counting {args.count}: cap {args.cache_mb} MiB; one image keeps "
        f"{per_image / 2**20:.2f} MiB; RSS {start:.0f} MiB before the first image"
    )
    print("| images | RSS MiB | RSS growth MiB | cache counts MiB | images held | they keep MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i in range(1, args.images + 1):
        image = scene(i, width, height)
        engine.embed(f"image{i}", lambda image=image: image)
        if i % args.every == 0 or i == args.images:
            held = len(engine.embeddings)
            print(
                f"| {i} | {rss_mib():.0f} | {rss_mib() - start:+.0f} | "
                f"{engine.embeddings.nbytes / 2**20:.1f} | {held} | "
                f"{held * per_image / 2**20:.1f} |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="samkit_default")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--every", type=int, default=50, help="print a row every N images")
    ap.add_argument("--cache-mb", type=int, default=256, help="the cache cap (MiB)")
    ap.add_argument("--size", default="1024x768", help="image WxH (default 1024x768)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--count",
        choices=["both", "all", "features"],
        default="both",
        help="what the cache counts: every tensor an image keeps (all, as samkit does), the "
        "embedding alone (features, as before), or both, each in a process of its own",
    )
    args = ap.parse_args()
    if args.count != "both":
        measure(args)
        return
    for count in ("all", "features"):
        argv = [a for a in sys.argv[1:] if not a.startswith("--count")]
        subprocess.run([sys.executable, __file__, *argv, "--count", count], check=True)
        print()


if __name__ == "__main__":
    main()

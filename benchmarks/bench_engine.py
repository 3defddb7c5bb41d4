"""Images/s of `samkit engine` (local Ray, an actor pool) against plain `samkit amg` (one
process), on the same images, model and generator options, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py --n 16 --size 128 --model samkit_tiny

Reported for the engine: the whole call with a fresh local Ray (start-up included), and a
second call on the Ray already running (actor start and model load still included).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, size - size // 4, 2)
            img[y : y + size // 4, x : x + size // 4] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"img{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", default="samkit_tiny")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--options", default="{}", help="more generator options (JSON)")
    parser.add_argument("--concurrency", type=int, default=2, help="engine actors")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of samkit amg")
    args = parser.parse_args()

    import ray
    import torch

    from samkit import SamAutomaticMaskGenerator, load
    from samkit.runner import collect_inputs, run_amg
    from samkit.scale.pipeline import EngineConfig, RayOptions, run_engine
    from samkit.scale.store import collect_items

    options = {"points_per_side": args.points_per_side, **json.loads(args.options)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_images(root / "in", args.n, args.size)
        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        generator = SamAutomaticMaskGenerator(load(args.model), output_mode="coco_rle", **options)
        amg = run_amg(
            collect_inputs([root / "in"]), root / "amg", generator, "sa1b", progress=False
        )
        amg_s = time.perf_counter() - start

        items = collect_items([str(root / "in")])
        ray_options = RayOptions(num_cpus=args.concurrency, concurrency=args.concurrency)
        results = {}
        for run, out in (("fresh Ray", "eng1"), ("Ray running", "eng2")):
            config = EngineConfig(model=args.model, out=str(root / out), amg_options=options)
            if run == "Ray running" and not ray.is_initialized():
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
            start = time.perf_counter()
            summary = run_engine(items, config, ray_options, progress=False)
            results[run] = time.perf_counter() - start
            assert summary.done == args.n and not summary.failed, summary.line()
        ray.shutdown()
        same = all(
            (root / "amg" / f"img{i:04d}.json").read_bytes()
            == (root / "eng1" / f"img{i:04d}.json").read_bytes()
            for i in range(args.n)
        )
    report = {
        "images": args.n,
        "size": args.size,
        "model": args.model,
        "options": options,
        "amg_images_per_s": round(args.n / amg_s, 3),
        "amg_threads": args.threads,
        "amg_masks": amg.masks,
        **{
            f"engine_{k.replace(' ', '_')}_images_per_s": round(args.n / v, 3)
            for k, v in results.items()
        },
        "engine_actors": args.concurrency,
        "outputs_identical": same,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

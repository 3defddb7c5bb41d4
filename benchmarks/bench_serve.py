"""Click-to-mask round trip of `samkit serve`, against the in-process predictor it wraps.

Starts the real server (uvicorn on 127.0.0.1, from a thread of this process), uploads an
image, embeds it once, then times HTTP predict requests as the annotator page sends them
(one positive point, 3 candidates as RLE JSON; then a second click feeding the first mask
back). The peer is `SamPredictor.predict` on the same model and image in the same run, so the
ratio is the cost of HTTP, JSON and RLE on top of the model.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_serve.py --model samkit_default

`--model` takes a name or a weights file; a registry variant without weights (such as
samkit_default before its trained weights ship) is built with seeded weights: the timing
depends on the architecture only.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def build(name: str) -> torch.nn.Module:
    from samkit import load
    from samkit.build import sam_model_registry, seeded_init_

    try:
        return load(name)
    except ValueError:
        if name not in sam_model_registry:
            raise
        print(f"note: no weights for {name}; its architecture with seeded weights instead")
        return seeded_init_(sam_model_registry[name](), seed=0).eval()


def scene(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(80, 170, size=(height, width, 3), dtype=np.uint8)
    img[height // 4 : height // 2, width // 5 : width // 2] = (220, 40, 40)
    return img


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def row(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1e3 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return f"| {name} | {statistics.median(ms):.1f} ms | {p90:.1f} ms |"


def main() -> None:
    import httpx2 as httpx

    from samkit import SamPredictor
    from samkit.serve import background, create_app

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="samkit_default")
    ap.add_argument("--size", default="1024x768", help="image WxH (default 1024x768)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    model = build(args.model)
    image = scene(width, height)
    point = [[width * 0.35, height * 0.37]]

    predictor = SamPredictor(model)
    predictor.set_image(image)
    coords, labels = np.array(point), np.array([1])
    direct = timed(lambda: predictor.predict(coords, labels), args.repeats)

    with tempfile.TemporaryDirectory() as tmp, background(create_app(Path(tmp), model)) as url:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        page = {"X-Samkit": "1"}  # as the annotator page sends on every write
        with httpx.Client(base_url=url, timeout=120, headers=page) as client:
            up = client.post("/api/images", files={"file": ("scene.png", buf.getvalue())})
            (image_id,) = (entry["id"] for entry in up.json())
            predict_url = f"/api/images/{image_id}/predict"
            start = time.perf_counter()
            client.post(f"/api/images/{image_id}/embed").raise_for_status()
            embed = time.perf_counter() - start
            first = client.post(predict_url, json={"points": point, "labels": [1]}).json()
            second_body = {
                "points": [*point, [5.0, 5.0]],
                "labels": [1, 0],
                "mask_input": {"token": first["token"], "index": first["best"]},
            }

            def click(body: dict) -> Callable[[], object]:
                return lambda: client.post(predict_url, json=body).raise_for_status()

            one = timed(click({"points": point, "labels": [1]}), args.repeats)
            two = timed(click(second_body), args.repeats)

    print(f"model {args.model}, image {width}x{height}, {args.threads} threads, ", end="")
    print(f"embedding {embed * 1e3:.0f} ms (once per image)")
    print("| step | median | p90 |\n|---|---|---|")
    print(row("in-process `SamPredictor.predict` (peer)", direct))
    print(row("HTTP predict, first click", one))
    print(row("HTTP predict, second click + mask feedback", two))
    ratio = statistics.median(one) / statistics.median(direct)
    print(f"first click over HTTP / in process: {ratio:.2f}x")


if __name__ == "__main__":
    main()

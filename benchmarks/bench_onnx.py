"""samkit on onnxruntime, fp32 and int8 (dynamic quantization), against samkit on torch.

Exports the model's encoder and decoder (fp32 and int8), then times, in turns after a warm-up,
`set_image` and a one-point `predict` (3 masks at the photo's own size) of `SamPredictor`
(torch), `OnnxPredictor` on the fp32 graphs and on the int8 graphs; and measures how far the
int8 masks are from the fp32 ones (IoU, over points on a grid). Prints a markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_onnx.py --model samkit_default --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_onnx.py --model vit_b --threads 1 --runs 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from skimage import data

from samkit import SamPredictor, load
from samkit.export import OnnxPredictor, export_decoder, export_encoder, quantize_dynamic_int8

Predictor = SamPredictor | OnnxPredictor


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def int8_ious(fp32: OnnxPredictor, int8: OnnxPredictor, image: np.ndarray, n: int) -> list[float]:
    """IoU of int8 against fp32 masks, 3 masks per point, points on an n x n grid."""
    h, w = image.shape[:2]
    ious = []
    for y in np.linspace(0, h, n + 2)[1:-1]:
        for x in np.linspace(0, w, n + 2)[1:-1]:
            prompt = {"point_coords": np.array([[x, y]]), "point_labels": np.array([1])}
            for a, b in zip(fp32.predict(**prompt)[0], int8.predict(**prompt)[0], strict=True):
                union = np.logical_or(a, b).sum()
                ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    return ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samkit_default", help="model name or weights file")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds")
    parser.add_argument("--grid", type=int, default=4, help="n x n points for the IoU check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = data.astronaut()  # 512 x 512 RGB photo
    point = {"point_coords": np.array([[250.0, 120.0]]), "point_labels": np.array([1])}
    model = load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        graphs = (
            export_encoder(model, folder / "e.onnx"),
            export_decoder(model, folder / "d.onnx"),
        )
        int8_graphs = [quantize_dynamic_int8(g, g.with_suffix(".int8.onnx")) for g in graphs]
        sizes = [sum(g.stat().st_size for g in gs) / 1e6 for gs in (graphs, int8_graphs)]
        predictors: dict[str, Predictor] = {
            "samkit torch fp32": SamPredictor(model),
            "onnxruntime fp32": OnnxPredictor(*graphs, threads=args.threads),
            "onnxruntime int8": OnnxPredictor(*int8_graphs, threads=args.threads),
        }
        times: dict[str, dict[str, list[float]]] = {n: {"set": [], "pred": []} for n in predictors}
        for round_ in range(args.runs + 1):  # round 0 is the warm-up
            for name, p in predictors.items():
                t_set = seconds(lambda p=p: p.set_image(image))
                t_pred = seconds(lambda p=p: p.predict(**point))
                if round_:
                    times[name]["set"].append(t_set)
                    times[name]["pred"].append(t_pred)
        fp32, int8 = predictors["onnxruntime fp32"], predictors["onnxruntime int8"]
        assert isinstance(fp32, OnnxPredictor) and isinstance(int8, OnnxPredictor)
        ious = int8_ious(fp32, int8, image, args.grid)
    base = {k: statistics.median(v) for k, v in times["samkit torch fp32"].items()}
    print(f"{args.model}, astronaut 512 x 512, {args.threads} thread(s), median of {args.runs}")
    print("| runtime | set_image | predict (1 point, 3 masks) | vs torch |")
    print("|---|---|---|---|")
    for name, t in times.items():
        s, q = statistics.median(t["set"]), statistics.median(t["pred"])
        ratio = f"{base['set'] / s:.2f}x / {base['pred'] / q:.2f}x"
        print(f"| {name} | {s * 1000:.1f} ms | {q * 1000:.1f} ms | {ratio} |")
    print(f"graph size: fp32 {sizes[0]:.1f} MB, int8 {sizes[1]:.1f} MB")
    share = float(np.mean(np.array(ious) >= 0.9))
    print(
        f"int8 vs fp32 masks over {len(ious)} ({args.grid}x{args.grid} points x 3): mean IoU "
        f"{np.mean(ious):.4f}, min {np.min(ious):.4f}, share >= 0.9: {share:.3f}"
    )


if __name__ == "__main__":
    main()

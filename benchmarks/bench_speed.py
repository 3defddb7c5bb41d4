"""Time samkit against the official `segment_anything`: set_image, predict and AMG, one run.

Both run in one process under the same torch (the bench venv has both; `make bench-env`):

    make bench-env
    .venv-peer/bin/python benchmarks/bench_speed.py --model vit_b --image astronaut --size 1024

Same weights (samkit's seeded ones for variants without trained weights, or a weights file),
the same real photo (scikit-image's `astronaut`, `coffee` or `chelsea`, resized so its longest
side is --size) and the same prompts. Each part gets one warm-up call per implementation, then
the two alternate for --repeats rounds (background load hits them alike); medians and the
ratio official / samkit are printed as one JSON line. Outputs are compared too: embedding
difference, predict-mask IoU, AMG masks matched both ways at IoU >= 0.99.

--precision bf16 runs samkit under bf16 autocast (the official code stays fp32) and adds the
accuracy of samkit's bf16 masks against samkit's fp32 masks. Peak memory is the process's
resident set above its level before the call, sampled every 5 ms during the warm-up call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samkit.build import sam_model_registry, seeded_init_
from samkit.loading import SEEDED_VARIANTS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_amg import build_pair, masks_match  # noqa: E402
from make_goldens import VARIANTS, build_official  # noqa: E402

PARTS = ("set_image", "predict", "amg")


def build_models(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(samkit's, the official) model with the same weights: seeded for a variant name
    (vit_b...) that has no weights on this machine, else what `samkit.load` finds."""
    if name not in VARIANTS or name in SEEDED_VARIANTS:
        return build_pair(name)
    ours = seeded_init_(sam_model_registry[name](), seed=0).eval()
    theirs = build_official(VARIANTS[name])
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs.eval()


def photo(name: str, size: int) -> np.ndarray:
    """scikit-image's photo `name`, resized so that its longest side is `size`."""
    from PIL import Image
    from skimage import data

    pil = Image.fromarray(getattr(data, name)())
    scale = size / max(pil.size)
    return np.asarray(pil.resize((round(pil.width * scale), round(pil.height * scale))))


def prompt_points(image: np.ndarray, n: int) -> np.ndarray:
    """n fixed, spread-out (X, Y) points inside the image."""
    h, w = image.shape[:2]
    t = (np.arange(n) + 0.5) / n
    return np.stack([t * w, ((t * 7) % 1.0) * h], axis=1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class Runner:
    """One implementation's set_image / predict / AMG calls on fixed inputs."""

    def __init__(self, impl: str, model: torch.nn.Module, args: argparse.Namespace) -> None:
        self.impl, self.model, self.args = impl, model, args
        if impl == "official":
            from segment_anything import SamAutomaticMaskGenerator, SamPredictor
        else:
            from samkit import SamAutomaticMaskGenerator, SamPredictor
        self.amg_class = SamAutomaticMaskGenerator
        bf16 = impl == "samkit" and args.precision == "bf16"
        kwargs = {"precision": "bf16"} if bf16 else {}
        self.predictor = SamPredictor(model, **kwargs)
        self.amg_kwargs = dict(json.loads(args.amg_options), **kwargs)
        self.image = photo(args.image, args.size)
        self.point = prompt_points(self.image, 1)

    def set_image(self) -> Any:
        self.predictor.set_image(self.image)
        return self.predictor.features.float().clone()

    def predict(self) -> Any:
        if not self.predictor.is_image_set:
            self.predictor.set_image(self.image)
        masks, _, _ = self.predictor.predict(
            point_coords=self.point, point_labels=np.array([1]), multimask_output=True
        )
        return masks

    def amg(self) -> Any:
        return self.amg_class(self.model, **self.amg_kwargs).generate(self.image)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def peak_rss_above(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(peak resident MB above the level before the call, fn's output)."""
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def poll() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_mb())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        out = fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss_mb()) - base, out


def time_rounds(fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict, dict, dict]:
    """Warm each up once (measuring its peak memory), then alternate them; medians of the
    seconds, peak MB and last output, by name."""
    peaks, outs = {}, {}
    for name, fn in fns.items():
        peaks[name], outs[name] = peak_rss_above(fn)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, peaks, outs


def compare_outputs(part: str, theirs: Any, ours: Any) -> dict[str, Any]:
    if part == "set_image":
        return {"embedding_max_abs_diff": float((theirs - ours).abs().max())}
    if part == "predict":
        return {"mask_iou": [round(mask_iou(a, b), 4) for a, b in zip(theirs, ours, strict=True)]}
    unmatched = masks_match(theirs, ours)
    return {"masks": [len(theirs), len(ours)], "unmatched": list(unmatched)}


def bf16_accuracy(model: torch.nn.Module, args: argparse.Namespace, n: int = 8) -> dict:
    """samkit bf16 against samkit fp32: mean IoU of single-point masks (all 3 outputs)."""
    from samkit import SamPredictor

    image = photo(args.image, args.size)
    points = prompt_points(image, n)
    results = {}
    for precision in ("fp32", "bf16"):
        predictor = SamPredictor(model, precision=precision)  # type: ignore[arg-type]
        predictor.set_image(image)
        results[precision] = [
            predictor.predict(point_coords=p[None], point_labels=np.array([1]))[0] for p in points
        ]
    ious = [
        mask_iou(a, b)
        for ma, mb in zip(results["fp32"], results["bf16"], strict=True)
        for a, b in zip(ma, mb, strict=True)
    ]
    return {"bf16_vs_fp32_mean_iou": round(float(np.mean(ious)), 4), "prompts": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="variant name or weights file")
    parser.add_argument("--image", default="astronaut", choices=["astronaut", "coffee", "chelsea"])
    parser.add_argument("--size", type=int, default=1024, help="longest image side")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--amg-options", default="{}", help="generator options as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    parts = [p for p in args.parts.split(",") if p]
    ours_model, their_model = build_models(args.model)
    runners = {
        "official": Runner("official", their_model, args),
        "samkit": Runner("samkit", ours_model, args),
    }
    report: dict[str, Any] = {
        "model": args.model,
        "image": [args.image, *runners["samkit"].image.shape[:2]],
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    for part in parts:
        fns = {impl: getattr(runner, part) for impl, runner in runners.items()}
        median, peaks, outs = time_rounds(fns, args.repeats)
        report[part] = {
            "official_s": round(median["official"], 4),
            "samkit_s": round(median["samkit"], 4),
            "speedup": round(median["official"] / median["samkit"], 2),
            "peak_mb": {impl: round(mb) for impl, mb in peaks.items()},
            **compare_outputs(part, outs["official"], outs["samkit"]),
        }
    if args.precision == "bf16":
        report["accuracy"] = bf16_accuracy(ours_model, args)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Time samkit's automatic mask generator against the official one, in one process.

Run inside the peer venv (it has the official `segment_anything`; samkit is put on the path),
so both use the same torch build and threads:

    make peer-venv
    PYTHONPATH=src .venv-peer/bin/python benchmarks/bench_amg.py --model samkit_default

Prints the median seconds of each, their ratio, and whether the masks match (IoU >= 0.99
both ways). `--memory` instead measures samkit's peak RSS on a large image in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


def build_pair(model_name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same weights in samkit's model and in the official package's."""
    from make_goldens import VARIANTS, build_official

    from samkit import load

    ours = load(model_name)
    theirs = build_official(VARIANTS[_variant_of(model_name)])
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs.eval()


def _variant_of(model_name: str) -> str:
    from samkit.loading import detect_variant

    if Path(model_name).is_file():
        from samkit.checkpoints import read_state_dict

        return detect_variant(read_state_dict(model_name), Path(model_name))
    return model_name


def test_image(size: int) -> np.ndarray:
    """A real photo shipped by scikit-image if installed, else the bundled example."""
    from PIL import Image

    try:
        from skimage import data

        img = data.astronaut()
    except ImportError:
        img = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples/shapes.png"))
    pil = Image.fromarray(img)
    scale = size / max(pil.size)
    return np.asarray(pil.resize((round(pil.width * scale), round(pil.height * scale))))


def time_it(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def masks_match(a: list[dict], b: list[dict], need: float = 0.99) -> tuple[int, int]:
    """(official masks unmatched, samkit masks unmatched) at IoU >= need."""
    from samkit.masks import mask_iou_matrix

    if not a or not b:
        return len(a), len(b)
    iou = mask_iou_matrix(
        np.stack([r["segmentation"] for r in a]), np.stack([r["segmentation"] for r in b])
    )
    return int((iou.max(1) < need).sum()), int((iou.max(0) < need).sum())


def compare(args: argparse.Namespace) -> dict:
    from segment_anything import SamAutomaticMaskGenerator as Official

    from samkit import SamAutomaticMaskGenerator

    options = json.loads(args.options)
    ours_model, their_model = build_pair(args.model)
    image = test_image(args.size)
    with torch.no_grad():
        t_ours, ours = time_it(
            lambda: SamAutomaticMaskGenerator(ours_model, **options).generate(image), args.repeats
        )
        t_theirs, theirs = time_it(
            lambda: Official(their_model, **options).generate(image), args.repeats
        )
    unmatched = masks_match(theirs, ours)  # type: ignore[arg-type]
    return {
        "model": args.model,
        "image": list(image.shape),
        "options": options,
        "threads": torch.get_num_threads(),
        "official_s": round(t_theirs, 3),
        "samkit_s": round(t_ours, 3),
        "speedup": round(t_theirs / t_ours, 2),
        "masks": [len(theirs), len(ours)],
        "unmatched": list(unmatched),  # type: ignore[arg-type]
    }


def memory(args: argparse.Namespace) -> dict:
    """Peak RSS of one samkit AMG run on a large image, measured in a fresh subprocess."""
    code = (
        "import json, resource, numpy as np, torch\n"
        "from samkit import SamAutomaticMaskGenerator, load\n"
        f"opts = json.loads({args.options!r})\n"
        f"img = np.random.default_rng(0).integers(0, 255, ({args.height}, {args.width}, 3), "
        "dtype=np.uint8)\n"
        f"g = SamAutomaticMaskGenerator(load({args.model!r}), **opts)\n"
        "with torch.no_grad(): n = len(g.generate(img))\n"
        "print(json.dumps({'masks': n, 'peak_rss_mb': resource.getrusage("
        "resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(
        image=[args.height, args.width],
        seconds=round(time.perf_counter() - t, 1),
        options=json.loads(args.options),
        model=args.model,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samkit_tiny")
    parser.add_argument("--size", type=int, default=512, help="longest image side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--options", default="{}", help="generator options as JSON")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--width", type=int, default=6000)
    args = parser.parse_args()
    print(json.dumps(memory(args) if args.memory else compare(args)))


if __name__ == "__main__":
    main()

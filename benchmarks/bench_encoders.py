"""Time image encoders on one 1024x1024 fp32 image: samkit's vit_t (MobileSAM) next to vit_b.

Run inside the peer venv (it has MobileSAM's and Meta's packages; samkit is put on the path),
so every model uses the same torch build and threads:

    make peer-venv
    OMP_NUM_THREADS=1 PYTHONPATH=src .venv-peer/bin/python benchmarks/bench_encoders.py

The models run in turn, round after round (so background load hits them alike), after one
warm-up pass each; prints the median seconds of each and the ratios. With --no-peers only
samkit's encoders run (samkit's own venv is enough then).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from samkit import sam_model_registry


def encoders(peers: bool) -> dict[str, torch.nn.Module]:
    """name -> image encoder in eval mode; weights are left at their initial values (timing
    does not depend on them)."""
    models = {
        "samkit vit_t": sam_model_registry["vit_t"]().image_encoder,
        "samkit vit_b": sam_model_registry["vit_b"]().image_encoder,
    }
    if peers:
        from mobile_sam import sam_model_registry as mobile_sam_registry
        from segment_anything import sam_model_registry as official_registry

        models["MobileSAM vit_t"] = mobile_sam_registry["vit_t"]().eval().image_encoder
        models["official vit_b"] = official_registry["vit_b"]().eval().image_encoder
    return {name: model.eval() for name, model in models.items()}


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed passes per model")
    parser.add_argument("--no-peers", action="store_true", help="samkit's encoders only")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    models = encoders(peers=not args.no_peers)
    for model in models.values():  # warm-up
        model(x)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.runs):
        for name, model in models.items():
            times[name].append(time_once(lambda model=model: model(x)))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, 1x3x1024x1024")
    for name, t in times.items():
        runs = ", ".join(f"{s:.2f}" for s in t)
        print(f"{name:16s} median {median[name]:7.2f} s   (runs: {runs})")
    print(f"vit_b / vit_t (samkit): {median['samkit vit_b'] / median['samkit vit_t']:.2f}x")
    if "MobileSAM vit_t" in median:
        print(f"samkit / MobileSAM vit_t: {median['samkit vit_t'] / median['MobileSAM vit_t']:.2f}")
        print(f"samkit / official vit_b:  {median['samkit vit_b'] / median['official vit_b']:.2f}")


if __name__ == "__main__":
    main()

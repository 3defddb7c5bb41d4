"""Peak memory of one `samkit finetune --freeze-encoder` step, measured on the CPU.

Each measurement runs in a fresh subprocess and reports its peak resident set size
(`resource.getrusage`): "idle" builds the model (random weights, no download) and its AdamW
optimizer; "encode" adds the frozen encoder's forward pass (no_grad) on one image; "decode"
adds the decoder's part of a step alone (16 masks, 3 prompt rounds, each backpropagated) on a
random image embedding; "step" adds one whole training step of the finetune recipe (one image,
up to 16 of its masks, 1-3 prompt rounds). The differences to "idle" are what a step adds on top of
the weights; they ground the GPU estimate in docs/guide.md (a GPU adds its own context and
allocator slack, which a CPU run cannot show).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_finetune_memory.py --model vit_b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys


def measure(model_name: str, phase: str, precision: str) -> dict[str, float]:
    """Run `phase` in this process and return its peak RSS in MiB."""
    import resource
    import time

    import torch

    from samkit.build import sam_model_registry
    from samkit.data import make_scene
    from samkit.train.config import finetune_config
    from samkit.train.step import simulate_rounds, step_generator, train_step
    from samkit.train.trainer import build_optimizer

    torch.manual_seed(0)
    model = sam_model_registry[model_name]()  # random weights: memory does not care
    model.image_encoder.requires_grad_(False)  # --freeze-encoder, as new_model does
    size = model.img_size
    config = finetune_config(
        model_name, size, steps=100, lr=1e-4, freeze_image_encoder=True, precision=precision
    )
    optimizer = build_optimizer(model.train(), config)
    scene = make_scene(0, 0, size)
    started = time.monotonic()
    stats = None
    if phase == "encode":
        image = torch.from_numpy(scene.image).permute(2, 0, 1).float()
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model.image_encoder(model.preprocess(image)[None])
    elif phase == "decode":
        embedding = torch.randn(1, 256, size // 16, size // 16)  # (1, C, h, w)
        masks = torch.from_numpy(scene.masks)  # a scene holds 8-25 masks: take 16
        targets = masks.repeat(config.masks_per_step // len(masks) + 1, 1, 1)
        targets = targets[: config.masks_per_step]
        three = dataclasses.replace(config, min_rounds=3, max_rounds=3)
        stats = simulate_rounds(model, embedding, targets, step_generator(0, 0), three, True)
    elif phase == "step":
        stats = train_step(model, optimizer, [scene], [0], config)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "peak_rss_mib": round(peak),
        "seconds": round(time.monotonic() - started, 1),
        "params_m": round(params / 1e6, 2),
        "trainable_m": round(trainable / 1e6, 2),
        "masks": stats.masks if stats else 0,
        "rounds": stats.rounds if stats else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: the subprocess's job
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(measure(args.model, args.phase, args.precision)))
        return
    rows = {}
    for precision in ("fp32", "bf16"):
        for phase in ("idle", "encode", "decode", "step"):
            cmd = [sys.executable, __file__, "--model", args.model, "--phase", phase]
            done = subprocess.run(
                [*cmd, "--precision", precision], capture_output=True, text=True, check=True
            )
            rows[f"{precision} {phase}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{precision} {phase}: {rows[f'{precision} {phase}']}", flush=True)
    for precision in ("fp32", "bf16"):
        idle = rows[f"{precision} idle"]["peak_rss_mib"]
        for phase in ("encode", "decode", "step"):
            extra = rows[f"{precision} {phase}"]["peak_rss_mib"] - idle
            print(f"{precision}: {phase} adds {extra} MiB to the {idle} MiB of model + optimizer")


if __name__ == "__main__":
    main()

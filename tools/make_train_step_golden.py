"""Golden loss and gradients of a MedSAM-style training step on Meta's official modules.

Runs in the throwaway peer venv that has the official package (never a samkit dependency):

    make train-step-golden    # .venv-peer/bin/python tools/make_train_step_golden.py

It builds the official model at samkit_tiny's size with the weights of
tests/goldens/core.safetensors and runs tests/test_train_step_parity.py's `medsam_step` (the
user's script, one copy for both packages) on that module's seeded inputs. The inputs, loss,
logits and every parameter's gradient go to tests/goldens/train_step.safetensors, which the
test compares with samkit's modules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]
from make_goldens import VARIANTS, build_official  # noqa: E402
from test_train_step_parity import medsam_step, step_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goldens", type=Path, default=ROOT / "tests/goldens")
    args = parser.parse_args()
    sam = build_official(VARIANTS["samkit_tiny"])
    sam.load_state_dict(load_file(str(args.goldens / "core.safetensors")), strict=True)
    batch = step_inputs()
    result = medsam_step(sam, batch)
    tensors = {f"input/{k}": v for k, v in batch.items()} | result
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(args.goldens / "train_step.safetensors"),
    )
    grads = sum(k.startswith("grad/") for k in result)
    print(f"loss {result['loss'].item():.6f}, {grads} gradients -> train_step.safetensors")


if __name__ == "__main__":
    main()

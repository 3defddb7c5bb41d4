"""Ship a training run's weights as the bundled samkit_default model.

Copies the model of a checkpoint (the run's latest by default) into
src/samkit/weights/samkit_default.safetensors, with the variant, the step and the config in
its metadata, after checking that it loads strictly into samkit_default.

python tools/bundle_default.py runs/default_stage7 [--checkpoint step_0003000]
    [--config configs/default_model_stage7.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.build import sam_model_registry
from samkit.checkpoints import load_weights, read_state_dict, write_safetensors
from samkit.train.checkpoint import latest_checkpoint

TARGET = Path(__file__).resolve().parents[1] / "src/samkit/weights/samkit_default.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (--out of samkit.train)")
    parser.add_argument("--checkpoint", default=None, help="a folder under RUN/checkpoints")
    parser.add_argument(
        "--config",
        default="configs/default_model_stage7.json",
        help="the committed config that made the run (recorded in the metadata)",
    )
    args = parser.parse_args()
    folder = args.run / "checkpoints"
    found = folder / args.checkpoint if args.checkpoint else latest_checkpoint(folder)
    if found is None or not (found / "model.safetensors").is_file():
        raise SystemExit(f"no checkpoint with a model.safetensors in {folder}")
    step = int(found.name.removeprefix("step_"))  # save_checkpoint names folders step_NNNNNNN
    state_dict = read_state_dict(found / "model.safetensors")
    load_weights(sam_model_registry["samkit_default"](), state_dict, variant="samkit_default")
    metadata = {
        "samkit_variant": "samkit_default",
        "samkit_train_step": str(step),
        "samkit_train_config": args.config,
    }
    write_safetensors(state_dict, TARGET, metadata=metadata)
    print(f"{found} (step {step}) -> {TARGET} ({TARGET.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

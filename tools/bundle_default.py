"""Ship a training run's weights as the bundled samkit_default model.

Copies the model of a pipeline stage's run (the pipeline's last stage, at its final checkpoint,
by default) into src/samkit/weights/samkit_default.safetensors, with the variant, the step and
the pipeline stage ("configs/default_model.json#<stage name>") in its metadata, after checking
that it loads strictly into samkit_default.

python tools/bundle_default.py [--pipeline configs/default_model.json] [--runs runs]
    [--stage NAME] [--checkpoint step_0003000] [--target FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.build import sam_model_registry
from samkit.checkpoints import load_weights, read_state_dict, write_safetensors
from samkit.train.checkpoint import latest_checkpoint
from samkit.train.pipeline import is_finished, load_pipeline, trained_steps

TARGET = Path(__file__).resolve().parents[1] / "src/samkit/weights/samkit_default.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline",
        default="configs/default_model.json",
        help="the committed pipeline that made the run (recorded in the metadata)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="its runs folder")
    parser.add_argument("--stage", default=None, help="stage name (default: the last stage)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a folder under RUNS/STAGE/checkpoints (default: the latest, which must be the "
        "stage's last step)",
    )
    parser.add_argument("--target", type=Path, default=TARGET, help="file to write")
    args = parser.parse_args()
    stages = load_pipeline(args.pipeline, args.runs)
    names = [s.name for s in stages]
    name = args.stage or names[-1]
    if name not in names:
        raise SystemExit(f"{args.pipeline} has no stage {name!r}; its stages: {', '.join(names)}")
    stage = stages[names.index(name)]
    if stage.config.model != "samkit_default":
        raise SystemExit(f"stage {name} trains {stage.config.model}, not samkit_default")
    run = args.runs / name
    folder = run / "checkpoints"
    if args.checkpoint is None and not is_finished(run, stage.config):
        raise SystemExit(
            f"stage {name} is not finished in {run} (step {trained_steps(run) or 0} of "
            f"{stage.config.total_steps}); finish it, or name a --checkpoint"
        )
    found = folder / args.checkpoint if args.checkpoint else latest_checkpoint(folder)
    if found is None or not (found / "model.safetensors").is_file():
        raise SystemExit(f"no checkpoint with a model.safetensors in {folder}")
    step = int(found.name.removeprefix("step_"))  # save_checkpoint names folders step_NNNNNNN
    state_dict = read_state_dict(found / "model.safetensors")
    load_weights(sam_model_registry["samkit_default"](), state_dict, variant="samkit_default")
    metadata = {
        "samkit_variant": "samkit_default",
        "samkit_train_step": str(step),
        "samkit_train_config": f"{args.pipeline}#{name}",
    }
    write_safetensors(state_dict, args.target, metadata=metadata)
    print(f"{found} (step {step}) -> {args.target} ({args.target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

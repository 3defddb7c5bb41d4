"""Train one config, or a pipeline of stages.

    python -m samkit.train --config configs/my_run.json --out runs/my_run [--resume]
    python -m samkit.train --pipeline configs/default_model.json [--runs runs]

A pipeline runs its stages in order, each into RUNS/<stage name>: a finished stage is skipped
and one with checkpoints resumes, so the same command goes on after a kill. It exits with
status 0 only once every stage is finished. The run options (--threads, --log-every,
--checkpoint-minutes, --val-minutes, --keep-checkpoints) may change whenever a run resumes.
Ctrl-C or SIGTERM stops a run after its current step and a checkpoint (exit status 130 or
143); a second one stops it at once.

Data-parallel on N processes: `torchrun --nproc_per_node N -m samkit.train --config ...`
(nccl with one GPU per process on CUDA, gloo on the CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path

from .. import devices
from ..interrupt import Interrupted, raise_on_signal
from . import distributed
from .config import RunOptions, TrainConfig
from .pipeline import load_pipeline, run_pipeline
from .trainer import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samkit.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="training config (JSON): one run, into --out")
    what.add_argument(
        "--pipeline", type=Path, help="pipeline of stages (JSON), each into RUNS/<stage name>"
    )
    parser.add_argument("--out", type=Path, help="run folder (with --config)")
    parser.add_argument(
        "--runs", type=Path, default=Path("runs"), help="the pipeline's folder (default: runs)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint (with --config)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda when available)"
    )
    parser.add_argument(
        "--precision",
        choices=devices.PRECISIONS,
        default=None,
        help="autocast precision, overriding the config's (auto: bf16 on CUDA and on CPUs "
        "with AVX-512 BF16 or AMX, else fp32)",
    )
    ops = parser.add_argument_group("run options (a resumed run may change them)")
    ops.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: one per core)"
    )
    ops.add_argument(
        "--log-every", type=int, default=RunOptions.log_every,
        help="steps a log record averages (default: %(default)s)",
    )  # fmt: skip
    ops.add_argument(
        "--checkpoint-minutes", type=float, default=RunOptions.checkpoint_minutes,
        help="minutes between checkpoints (default: %(default)s)",
    )  # fmt: skip
    ops.add_argument(
        "--val-minutes", type=float, default=RunOptions.val_minutes,
        help="minutes between validations (default: %(default)s)",
    )  # fmt: skip
    ops.add_argument(
        "--keep-checkpoints", type=int, default=RunOptions.keep_checkpoints,
        help="checkpoints kept, newest first (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.config is not None and args.out is None:
        parser.error("--config needs --out, the run folder")
    if args.pipeline is not None and (args.out is not None or args.resume):
        parser.error("--out and --resume go with --config: a pipeline writes RUNS/<stage name> "
                     "and resumes by itself")  # fmt: skip
    try:  # checked before any work starts
        device = devices.resolve_device(args.device)
        options = RunOptions(
            threads=args.threads,
            log_every=args.log_every,
            checkpoint_minutes=args.checkpoint_minutes,
            val_minutes=args.val_minutes,
            keep_checkpoints=args.keep_checkpoints,
        )
        if args.config is not None:
            configs = [TrainConfig.load(args.config)]
        else:
            stages = load_pipeline(args.pipeline, args.runs)
            configs = [stage.config for stage in stages]
    except ValueError as e:
        parser.error(str(e))
    if args.precision is not None:
        configs = [dataclasses.replace(c, precision=args.precision) for c in configs]
    run = functools.partial(train, max_steps=args.max_steps, device=device, options=options)
    try:
        with raise_on_signal():  # within a run: finish the step, save a checkpoint, raise
            if args.config is not None:
                run(configs[0], args.out, resume=args.resume)
                return 0
            pairs = zip(stages, configs, strict=True)
            stages = [dataclasses.replace(s, config=c) for s, c in pairs]
            return 0 if run_pipeline(stages, args.runs, run) else 1
    except Interrupted as stop:
        again = "with --resume" if args.config is not None else "again"
        print(f"{parser.prog}: {stop}; run the same command {again} to go on", file=sys.stderr)
        return stop.exit_code
    finally:
        distributed.teardown()


if __name__ == "__main__":
    raise SystemExit(main())

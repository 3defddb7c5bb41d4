"""`python -m samkit.train --config configs/default_model.json --out runs/default [--resume]`

Data-parallel on N processes: `torchrun --nproc_per_node N -m samkit.train --config ...`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import distributed
from .config import TrainConfig
from .trainer import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samkit.train", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="training config (JSON)")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    args = parser.parse_args(argv)
    try:
        train(TrainConfig.load(args.config), args.out, resume=args.resume, max_steps=args.max_steps)
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()

"""Argument types and options that several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from ..data.folders import SampleSource


# -- argument types ------------------------------------------------------------------------
def floats(n: int) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != n or not all(np.isfinite(values)):
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return values

    return parse


xy = floats(2)


def add_dataset_arguments(p: argparse.ArgumentParser, *, synthetic: bool) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    if synthetic:
        src.add_argument(
            "--synthetic", type=int, metavar="SEED", help="synthetic scenes of this seed"
        )
    src.add_argument("--sa1b", metavar="DIR", help="SA-1B folder (images + JSON)")
    src.add_argument("--coco", metavar="JSON", help="COCO instances file (with --images)")
    p.add_argument("--images", help="folder of the COCO file's images")


def dataset(args: argparse.Namespace) -> SampleSource:
    """The SA-1B folder or COCO file the arguments name."""
    if args.sa1b:
        from ..data import SA1BFolder

        return SA1BFolder(args.sa1b)
    if not args.images:
        raise ValueError("--coco needs --images, the folder its file_names are relative to")
    from ..data import CocoInstances

    return CocoInstances(args.coco, args.images, skip_empty=True)


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers like 1,3,5; got {text!r}"
        )
    return values

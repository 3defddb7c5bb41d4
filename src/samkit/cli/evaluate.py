"""`samkit eval`: mIoU after 1, 2, 3, ... clicks of the standard click protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import (
    DEVICE_HELP,
    add_dataset_arguments,
    add_model_argument,
    bounded,
    dataset,
    out_dir,
    positive_ints,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="mIoU after 1, 2, 3, ... clicks of the standard click protocol",
        description="Interactive evaluation: the first click at the point farthest from the "
        "object's boundary, each next click at the centre of the largest error region. "
        "Reports mIoU (mask chosen by predicted IoU) and the best-of-3 oracle after one click, "
        "overall and per group with 95% confidence intervals.",
        epilog="examples:\n  samkit eval --model samkit_default --synthetic 3 --n 100 --out ev/\n"
        "  samkit eval --model vit_b --coco instances.json --images imgs/ --group-by "
        "category_id --out ev/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(p)
    add_dataset_arguments(p, synthetic=True)
    p.add_argument(
        "--n", type=bounded(int, 1), default=50, help="number of synthetic scenes (default 50)"
    )
    p.add_argument(
        "--size",
        type=bounded(int, 32),
        default=128,
        help="synthetic scene size in pixels, at least 32 (default 128)",
    )
    p.add_argument("--group-by", help="annotation field to group by (synthetic: its kind)")
    p.add_argument(
        "--clicks",
        type=positive_ints,
        default=[1, 2, 3, 5, 9],
        help="click counts to report (default 1,2,3,5,9)",
    )
    p.add_argument(
        "--random-first",
        type=bounded(int, 0),
        metavar="SEED",
        help="first click at a random pixel of the object (seeded) instead",
    )
    p.add_argument("--out", type=out_dir, help="folder for results.md, results.csv and miou.png")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from .. import load
    from .._atomic import atomic_path
    from ..eval import report

    if args.synthetic is not None:
        items = report.synthetic_items(args.synthetic, args.n, args.size)
    else:
        items = report.dataset_items(dataset(args), args.group_by)
    scores = report.evaluate(
        load(args.model, device=args.device),
        items,
        max(args.clicks),
        random_first_seed=args.random_first,
    )
    rows = report.summarize(scores, args.clicks)
    table = report.to_markdown(rows)
    print(table, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "results.md") as tmp:
            tmp.write_text(table)
        report.write_csv(rows, out / "results.csv")
        report.plot_png(rows, out / "miou.png")
    return 0

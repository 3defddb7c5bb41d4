"""`samkit eval`: mIoU after 1, 2, 3, ... clicks of the standard click protocol; and
`samkit eval TASK ...`, the SAM paper's other zero-shot tasks, one module each
(`eval_<task>.py`, whose `add(sub)` adds the parser named `eval-<task>`)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from .arguments import (
    DEVICE_HELP,
    add_dataset_arguments,
    add_model_argument,
    bounded,
    datasets,
    out_dir,
    positive_ints,
)

# The zero-shot tasks after the click protocol: `samkit eval TASK` runs the `eval-TASK` parser.
TASKS = ("edges", "proposals", "boxes")


def route(argv: Sequence[str]) -> list[str]:
    """`eval TASK ...` -> `eval-TASK ...`: each task is its own parser, while plain
    `samkit eval --model ...` stays the click protocol."""
    argv = list(argv)
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in TASKS:
        return [f"eval-{argv[1]}", *argv[2:]]
    return argv


def add(sub: argparse._SubParsersAction) -> None:
    for task in TASKS:
        importlib.import_module(f"{__package__}.eval_{task}").add(sub)
    p = sub.add_parser(
        "eval",
        help="mIoU after 1, 2, 3, ... clicks of the standard click protocol",
        description="Interactive evaluation: the first click at the point farthest from the "
        "object's boundary, each next click at the centre of the largest error region. "
        "Reports, overall and per group with 95% confidence intervals, mIoU@k: the IoU after "
        "k clicks of the mask the model picks by its own predicted IoU (what a user gets), and "
        "oracle@1: the best of the 3 first-click masks against the ground truth (the SAM "
        "paper's oracle, §7.1). Several datasets (--sa1b or --coco repeated) are evaluated "
        "one by one: a summary table with a row per dataset, then each dataset's groups.",
        epilog="examples:\n  samkit eval --model samkit_default --synthetic 3 --n 100 --out ev/\n"
        "  samkit eval --model vit_b --coco instances.json --images imgs/ --group-by "
        "category_id --out ev/\n"
        "  samkit eval --model vit_b --sa1b data/a --sa1b data/b --out ev/   # a row per dataset"
        "\n  samkit eval --text --model text.safetensors --synthetic 3 --out ev/   # phrases"
        "\n\n"
        f"the paper's other zero-shot tasks: samkit eval {{{','.join(TASKS)}}} --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(p)
    add_dataset_arguments(p, synthetic=True, several=True)
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
        help="click counts k to report mIoU@k at (default 1,2,3,5,9)",
    )
    p.add_argument(
        "--random-first",
        type=bounded(int, 0),
        metavar="SEED",
        help="first click at a random pixel of the object (seeded) instead",
    )
    p.add_argument("--out", type=out_dir, help="folder for results.md, results.csv and miou.png")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument(
        "--text",
        action="store_true",
        help="text prompts instead (--synthetic only; a model with a text head): every phrase "
        "naming an object, its mIoU with the text alone, with text and 1 and 3 clicks, and with "
        "1 and 3 clicks alone, per phrase kind, for training words and held-out synonyms; "
        "--out gets text_results.md, text_results.csv and text_miou.png; --clicks does not apply",
    )
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from .. import load
    from ..eval import report

    if args.text:  # phrases naming objects of synthetic scenes
        from ..eval import text

        if args.synthetic is None:
            raise ValueError("--text evaluates synthetic scenes only (--synthetic SEED) for now")
        if args.group_by or args.random_first is not None:
            raise ValueError(
                "--text groups by phrase kind and clicks first at the object's most interior "
                "point: leave out --group-by and --random-first"
            )
        model = load(args.model, device=args.device, precision=args.precision)
        rows = text.text_tables(text.evaluate_text(model, args.synthetic, args.n, args.size))
        print(text.results_markdown(rows), end="")
        if args.out:
            text.write_results(rows, args.out)
        return 0
    if args.synthetic is not None:
        sources = {"synthetic": report.synthetic_items(args.synthetic, args.n, args.size)}
    else:
        sources = {name: report.dataset_items(data, args.group_by) for name, data in datasets(args)}
    tables = report.evaluate_datasets(
        load(args.model, device=args.device, precision=args.precision),
        sources,
        args.clicks,
        random_first_seed=args.random_first,
    )
    print(report.results_markdown(tables), end="")
    if args.out:
        report.write_results(tables, args.out)
    return 0

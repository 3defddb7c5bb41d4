"""`samkit eval` and `samkit finetune`: the commands that read annotated datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from .data.folders import SampleSource
from .devices import PRECISIONS
from .modeling import Sam


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
        from .data import SA1BFolder

        return SA1BFolder(args.sa1b)
    if not args.images:
        raise ValueError("--coco needs --images, the folder its file_names are relative to")
    from .data import CocoInstances

    return CocoInstances(args.coco, args.images, skip_empty=True)


# -- eval ----------------------------------------------------------------------------------
def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="mIoU after 1, 2, 3, ... clicks of the standard click protocol",
        description="Interactive evaluation: the first click at the point farthest from the "
        "object's boundary, each next click at the centre of the largest error region. "
        "Reports mIoU (mask chosen by predicted IoU) and the best-of-3 oracle after one click, "
        "overall and per group with 95%% confidence intervals.",
        epilog="examples:\n  samkit eval --model samkit_default --synthetic 3 --n 100 --out ev/\n"
        "  samkit eval --model vit_b --coco instances.json --images imgs/ --group-by "
        "category_id --out ev/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model name or weights file")
    add_dataset_arguments(p, synthetic=True)
    p.add_argument("--n", type=int, default=50, help="number of synthetic scenes (default 50)")
    p.add_argument("--size", type=int, default=128, help="synthetic scene size (default 128)")
    p.add_argument("--group-by", help="annotation field to group by (synthetic: its kind)")
    p.add_argument(
        "--clicks",
        type=positive_ints,
        default=[1, 2, 3, 5, 9],
        help="click counts to report (default 1,2,3,5,9)",
    )
    p.add_argument(
        "--random-first",
        type=int,
        metavar="SEED",
        help="first click at a random pixel of the object (seeded) instead",
    )
    p.add_argument("--out", help="folder for results.md, results.csv and miou.png")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from . import load
    from .eval import report

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
        (out / "results.md").write_text(table)
        report.write_csv(rows, out / "results.csv")
        report.plot_png(rows, out / "miou.png")
    return 0


# -- finetune ------------------------------------------------------------------------------
def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on your own SA-1B or COCO annotations",
        description="Fine-tune with SAM's interactive training recipe (simulated clicks and "
        "boxes, corrective clicks from the error region, focal + dice and IoU losses). "
        "Writes OUT/model.safetensors, loadable anywhere a model name is taken; a killed run "
        "continues with --resume. Measure the result with `samkit eval` on held-out data.",
        epilog="examples:\n"
        "  samkit finetune --model samkit_default --sa1b my_sa1b/ --steps 500 --out ft/\n"
        "  samkit finetune --model vit_b --coco train.json --images imgs/ --freeze-encoder "
        "--out ft/\n  samkit eval --model ft/model.safetensors --sa1b held_out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model name or weights file to start from")
    add_dataset_arguments(p, synthetic=False)
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, model)")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps (default 500)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train the prompt encoder and mask decoder only (faster, less data needed)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="fraction of the images kept out of training and used to report mIoU before "
        "and after (default 0.1; at least one image)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N or mps, for training and the before/after evaluation "
        "(default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="training autocast (default: the recipe's; auto = bf16 on CUDA and on CPUs with "
        "AVX-512 BF16 or AMX, else fp32)",
    )
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.set_defaults(handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from . import devices, load
    from .eval import report
    from .loading import detect_variant
    from .train import train
    from .train.config import finetune_config, finetune_options
    from .train.sources import DatasetSource, split_holdout

    if args.steps < 1:
        raise ValueError(f"--steps must be positive; got {args.steps}")
    device = devices.resolve_device(args.device)  # before any work starts
    model = load(args.model, device=device)
    weights = model.state_dict()
    config = finetune_config(
        detect_variant(weights),
        model.img_size,
        steps=args.steps,
        lr=args.lr,
        freeze_image_encoder=args.freeze_encoder,
    )
    if args.precision is not None:
        config = dataclasses.replace(config, precision=args.precision)
    training, held_out = split_holdout(dataset(args), args.holdout, seed=config.seed)
    out = Path(args.out)

    items = list(report.dataset_items(held_out, None))  # read once, measured twice

    def measure(m: Sam) -> list[report.Row]:
        scores = report.evaluate(m, items, max(CLICKS))
        return report.summarize(scores, CLICKS)

    before = measure(model)
    tuned = train(
        config,
        out,
        resume=args.resume,
        source=DatasetSource(training, model.img_size, config.seed),
        init_weights=weights,
        device=device,
        options=finetune_options(args.steps, args.threads),
    )
    after = measure(tuned.eval())
    lines = [f"held-out images: {len(held_out)}", "", "before:", report.to_markdown(before)]
    lines += ["after:", report.to_markdown(after)]
    print("\n".join(lines), end="")
    summary = {
        "held_out_images": len(held_out),
        **{f"before_miou@{k}": before[0].miou[k][0] for k in CLICKS},
        **{f"after_miou@{k}": after[0].miou[k][0] for k in CLICKS},
    }
    (out / "finetune_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"fine-tuned weights: {out / 'model.safetensors'}")
    return 0


CLICKS = (1, 3)  # the clicks `samkit finetune` reports before and after


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

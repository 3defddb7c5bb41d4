"""`samkit finetune`: fine-tune a model on SA-1B or COCO annotations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devices import PRECISIONS
from ..modeling import Sam
from .arguments import add_dataset_arguments, dataset


def add(sub: argparse._SubParsersAction) -> None:
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

    from .. import devices, load
    from ..eval import report
    from ..loading import detect_variant
    from ..train import train
    from ..train.config import finetune_config, finetune_options
    from ..train.sources import DatasetSource, split_holdout

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

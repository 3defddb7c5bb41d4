"""`samkit finetune`: fine-tune a model on SA-1B or COCO annotations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.folders import SampleSource
from ..devices import PRECISIONS
from ..modeling import Sam
from ..text import DEFAULT_TEXT_ENCODER
from .arguments import add_dataset_arguments, add_model_argument, bounded, dataset, out_dir


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
        "--out ft/\n  samkit eval --model ft/model.safetensors --sa1b held_out/\n"
        "  samkit finetune --coco train.json --images imgs/ --text --out ft_text/   "
        "# category names as text prompts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(p, precision=False)  # its --precision is the training autocast's
    add_dataset_arguments(p, synthetic=False)
    p.add_argument(
        "--out", required=True, type=out_dir, help="run folder (checkpoints, log, model)"
    )
    p.add_argument("--steps", type=int, default=500, help="optimizer steps (default 500)")
    p.add_argument(
        "--lr",
        type=bounded(float, 0, exclusive=True),
        default=1e-4,
        help="peak learning rate (default 1e-4)",
    )
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train the prompt encoder and mask decoder only (faster, less data needed)",
    )
    p.add_argument(
        "--holdout",
        type=bounded(float, 0, 1, exclusive=True),
        default=0.1,
        help="fraction of the images kept out of training and used to report mIoU before "
        "and after (default 0.1; at least one image). Images without masks are skipped in "
        "both, and counted in the summary",
    )
    p.add_argument(
        "--threads", type=bounded(int, 1), default=2, help="torch CPU threads (default 2)"
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N or mps, for training and the before/after evaluation "
        "(default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--precision",
        type=_training_precision,
        choices=PRECISIONS,
        default=None,
        help="training autocast (default: the recipe's; auto = bf16 on CUDA and on CPUs with "
        "AVX-512 BF16 or AMX, else fp32)",
    )
    p.add_argument(
        "--text",
        nargs="?",
        const=DEFAULT_TEXT_ENCODER,
        default=None,
        metavar="ENCODER",
        help="also train text prompts: an annotation whose category (COCO categories; an SA-1B "
        "annotation's category_name, category or label) is the only one of its kind in its "
        'image is prompted with the name ("dog", "the dog"). The model gets a text head '
        f"for ENCODER (default {DEFAULT_TEXT_ENCODER}, offline; or clip:<model>[:<weights>])",
    )
    p.add_argument(
        "--text-prob",
        type=bounded(float, 0, 1),
        default=None,
        metavar="P",
        help=f"with --text: chance that a target its category names gets the name as a prompt "
        f"(default {TEXT_PROB})",
    )
    p.add_argument(
        "--text-from-crops",
        action="store_true",
        help="with --text clip:...: train as the SAM paper did, every annotation prompted "
        "(chance --text-prob) by CLIP's image embedding of its crop instead of a name, so no "
        "category names are needed; at inference a phrase's CLIP text embedding takes its place",
    )
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.set_defaults(handler=_finetune)


def _training_precision(text: str) -> str:
    """--precision's type: int8, which the other commands take, refused with the reason."""
    if text == "int8":
        raise argparse.ArgumentTypeError(
            "int8 is for inference only (samkit.load(..., precision='int8'), the other "
            f"commands' --precision); a model trains in {', '.join(PRECISIONS)}"
        )
    return text


def _finetune(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .. import devices, load
    from ..data import CocoInstances
    from ..eval import report
    from ..loading import detect_variant
    from ..train import train
    from ..train.config import finetune_config, finetune_options
    from ..train.sources import DatasetSource, split_holdout

    if args.steps < 1:
        raise ValueError(f"--steps must be positive; got {args.steps}")
    if args.text_prob is not None and args.text is None:
        raise ValueError("--text-prob is the chance of a text prompt: it needs --text")
    if args.text_from_crops and not (args.text or "").startswith("clip:"):
        raise ValueError(
            "--text-from-crops embeds crops with CLIP's image tower: it needs "
            "--text clip:<model>[:<weights>]"
        )
    device = devices.resolve_device(args.device)  # before any work starts
    data = dataset(args)  # a COCO file's images without annotations are left out here
    phrased = _check_text(args, data) if args.text is not None else 0
    model = load(args.model, device=device)
    weights = model.state_dict()
    text_prob = TEXT_PROB if args.text_prob is None else args.text_prob
    config = finetune_config(
        detect_variant(weights),
        model.img_size,
        steps=args.steps,
        lr=args.lr,
        freeze_image_encoder=args.freeze_encoder,
        text_encoder=args.text or "",
        text_prob=0.0 if args.text is None else text_prob,
        text_from_crops=args.text_from_crops,
    )
    if args.precision is not None:
        config = dataclasses.replace(config, precision=args.precision)
    in_file = len(data.coco.images) if isinstance(data, CocoInstances) else len(data)
    unannotated = in_file - len(data)
    training, held_out = split_holdout(data, args.holdout, seed=config.seed)
    out = Path(args.out)

    # Read once, measured twice. A held-out image without a mask (an SA-1B JSON with no
    # annotations, or only empty ones) is skipped, as DatasetSource skips it in training.
    read = list(report.dataset_items(held_out, None))
    items = [item for item in read if item.masks.any()]
    skipped = len(read) - len(items)
    if not items:
        raise ValueError(
            f"none of the {len(held_out)} held-out images has a mask to measure (images "
            "without masks are skipped); hold out more images with a larger --holdout"
        )

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
    without = f", {skipped} without masks skipped" if skipped else ""
    lines = [f"held-out images: {len(held_out)}{without}"]
    if unannotated:
        lines.append(
            f"images without annotations: {unannotated} of {in_file} in "
            f"{args.coco}, left out of training and the held-out set"
        )
    if args.text_from_crops:
        lines.append(f"text prompts ({args.text}): CLIP image embeddings of annotation crops")
    elif args.text is not None:
        lines.append(f"text prompts ({args.text}): {phrased} annotations named by their category")
    lines += ["", "before:", report.to_markdown(before), "after:", report.to_markdown(after)]
    print("\n".join(lines), end="")
    summary = {
        "held_out_images": len(held_out),
        "held_out_without_masks": skipped,
        "images_without_annotations": unannotated,
        **({"text_named_annotations": phrased} if args.text is not None else {}),
        **{f"before_miou@{k}": before[0].miou[k][0] for k in CLICKS},
        **{f"after_miou@{k}": after[0].miou[k][0] for k in CLICKS},
    }
    (out / "finetune_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"fine-tuned weights: {out / 'model.safetensors'}")
    return 0


def _check_text(args: argparse.Namespace, data: SampleSource) -> int:
    """The number of annotations of `data` that a phrase names (`train.sources.mask_phrases`;
    0 with --text-from-crops, which needs no names); ValueError when there are none, or when
    the text encoder --text names cannot be built."""
    from ..text import get_text_encoder
    from ..train.sources import count_phrases

    if args.text_from_crops:  # crops need no names; only the encoder, before training
        get_text_encoder(args.text)
        return 0
    named, phrased = count_phrases(data)  # the annotation files only: no image is read
    where = args.coco or args.sa1b
    if named == 0:
        raise ValueError(
            f"--text: no annotation in {where} has a category name (COCO: the file's "
            "categories; SA-1B: a category_name, category or label field), so there is no "
            "text to learn; leave out --text"
        )
    if phrased == 0:
        raise ValueError(
            f"--text: {named} annotations in {where} have category names, but each name has "
            "several instances in its image, so none names one mask; text prompts need "
            "images where a category appears once"
        )
    get_text_encoder(args.text)  # an unknown or missing encoder fails here, before training
    return phrased


CLICKS = (1, 3)  # the clicks `samkit finetune` reports before and after
TEXT_PROB = 0.5  # --text-prob's default: half the named targets get their name as a prompt

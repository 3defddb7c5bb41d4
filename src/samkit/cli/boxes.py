"""`samkit boxes2masks`: a detector's boxes to instance masks (the SAM paper's §7.4 protocol)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .arguments import DEVICE_HELP, add_model_argument, bounded, out_file

if TYPE_CHECKING:
    from ..eval.boxes import BoxInputs


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "boxes2masks",
        help="turn a detector's boxes (COCO results JSON) into masks, optionally scoring mask AP",
        description="Prompt SAM with each detected box (one mask per box) and write the "
        "detections with a 'segmentation' (COCO RLE) added: COCO results format, as "
        "pycocotools' COCOeval reads it. The zero-shot instance segmentation protocol of the "
        "SAM paper (§7.4), which prompts with a detector's boxes. Without --detections the "
        "COCO file's own boxes are used, with score 1 (an oracle detector).",
        epilog="examples:\n"
        "  samkit boxes2masks instances.json images/ --detections dets.json --out results.json\n"
        "  samkit boxes2masks instances.json images/ --out results.json --score   # GT boxes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_box_arguments(p)
    p.add_argument("--out", type=out_file, required=True, help="results JSON to write")
    p.add_argument(
        "--score",
        action="store_true",
        help="also print mask AP against COCO_JSON's masks (needs pycocotools)",
    )
    p.set_defaults(handler=_boxes2masks)


def add_box_arguments(p: argparse.ArgumentParser) -> None:
    """COCO_JSON, IMAGES, --detections, --batch-size, --model and --device: the inputs of
    box prompting, which `samkit boxes2masks` and `samkit eval boxes` share."""
    p.add_argument("coco", metavar="COCO_JSON", help="COCO instances file naming the images")
    p.add_argument("images", metavar="IMAGES", help="folder of its file_names")
    p.add_argument(
        "--detections",
        metavar="JSON",
        help="detections in COCO results format: [{image_id, category_id, bbox [x,y,w,h], "
        "score}] (default: COCO_JSON's annotations' boxes, score 1)",
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1),
        default=64,
        help="boxes decoded at once (default 64)",
    )
    add_model_argument(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)


def segment_boxes(
    args: argparse.Namespace, *, scoring: str | None, progress: bool = False
) -> tuple[BoxInputs, list[dict[str, Any]]]:
    """Check the inputs `add_box_arguments` names (when `scoring` names what scores the
    masks, also that pycocotools is there and that there are detections), then load the
    model and prompt it with every box: the checked inputs and the masks (COCO results)."""
    from .. import load
    from ..eval import boxes

    inputs = boxes.box_inputs(args.coco, args.images, args.detections)
    if scoring is not None:
        boxes.require_pycocotools(scoring)
        if not inputs.detections:
            raise ValueError(f"{scoring}: there are no detections to score")
    results = boxes.segment_detections(
        load(args.model, device=args.device, precision=args.precision),
        inputs.images,
        inputs.detections,
        batch_size=args.batch_size,
        progress=progress,
    )
    return inputs, results


def _boxes2masks(args: argparse.Namespace) -> int:
    from ..eval import boxes
    from ..interrupt import images
    from ..io import write_json

    inputs, results = segment_boxes(args, scoring="--score" if args.score else None)
    write_json(args.out, results)
    masks = f"{len(results)} mask" + ("" if len(results) == 1 else "s")
    print(f"{masks} of {images(len(inputs.images))} written to {args.out}")
    if args.score:
        print(boxes.ap_markdown(boxes.mask_ap(args.coco, results)), end="")
    return 0

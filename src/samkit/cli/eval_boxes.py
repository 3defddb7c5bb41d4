"""`samkit eval boxes`: mask AP of SAM prompted with a detector's boxes, the SAM paper's
zero-shot instance segmentation (§7.4), written as the click eval writes its results."""

from __future__ import annotations

import argparse

from .arguments import out_dir
from .boxes import add_box_arguments, segment_boxes


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-boxes",
        prog="samkit eval boxes",
        help="mask AP of SAM prompted with a detector's boxes (COCO, LVIS)",
        description="Zero-shot instance segmentation (SAM paper §7.4): prompt SAM with each "
        "detected box, one mask per box, and score the masks against COCO_JSON's with "
        "pycocotools' COCOeval: AP, AP50, AP75, APs, APm, APl, and APr, APc, APf when the "
        "categories carry LVIS's 'frequency' (COCOeval restricted to those categories, not "
        "LVIS's federated protocol). Without --detections the COCO file's own boxes are used "
        "(an oracle detector). Writes results.md, results.csv, ap.png (AP at each IoU "
        "threshold) and results.json (the masks, COCO results format) into --out.",
        epilog="examples:\n"
        "  samkit eval boxes instances_val2017.json val2017/ --detections vitdet.json "
        "--out ev/\n"
        "  samkit eval boxes lvis_val.json images/ --out ev/   # ground-truth boxes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_box_arguments(p)
    p.add_argument(
        "--out",
        type=out_dir,
        required=True,
        help="folder for results.md, results.csv, ap.png and results.json",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..eval import box_report, boxes

    inputs, results = segment_boxes(
        args, scoring="samkit eval boxes", progress=not args.no_progress
    )
    table = box_report.write_results(
        args.out,
        boxes.score_masks(args.coco, results),
        results,
        images=len(inputs.images),
        boxes=args.detections or "the annotations' own (an oracle detector)",
    )
    print(table, end="")
    return 0

"""`samkit eval proposals`: zero-shot object proposals, mask AR@k (the SAM paper's §7.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import DEVICE_HELP, add_model_argument, bounded, out_dir, positive_ints

# (option, type, help); each default is the protocol's, PROPOSAL_SETTINGS.
OPTIONS = [
    ("points_per_side", bounded(int, 1), "grid points along each side of the image"),
    ("crop_n_layers", bounded(int, 0), "zoomed crop layers; 0: the whole image only"),
    ("crop_n_points_downscale_factor", bounded(int, 1), "crop layer i has factor**i fewer points"),
    ("pred_iou_thresh", bounded(float, 0, 1), "drop masks of lower predicted IoU; 0: off"),
    ("stability_score_thresh", bounded(float, 0, 1), "drop less stable masks; 0: off"),
    ("box_nms_thresh", bounded(float, 0, 1), "box IoU above which NMS drops a duplicate"),
    ("crop_nms_thresh", bounded(float, 0, 1), "the same across crops"),
]


def add(sub: argparse._SubParsersAction) -> None:
    from ..eval.proposals import PROPOSAL_SETTINGS

    p = sub.add_parser(
        "eval-proposals",
        prog="samkit eval proposals",
        help="zero-shot object proposals: mask average recall AR@10/100/1000",
        description="The SAM paper's zero-shot object proposal task (§7.3 and appendix D.3, on\n"
        "LVIS v1 val). The automatic mask generator proposes masks for each image, ranked\n"
        "by the mean of predicted IoU and stability score; the best K an image are scored by\n"
        "mask average recall AR@K (recall averaged over IoU 0.50:0.05:0.95, by pycocotools'\n"
        "COCOeval with useCats=0): overall, for small/medium/large objects and, when the\n"
        "categories carry LVIS's 'frequency', for frequent/common/rare ones (each against the\n"
        "objects of those categories only). Only images with an object are run. The defaults\n"
        "are the protocol's (64x64 points, one layer of 2x2 crops, filters off, NMS 0.9);\n"
        "--points-per-side 16 --crop-n-layers 0 is a quick look on a CPU.",
        epilog="examples:\n"
        "  samkit eval proposals instances_val2017.json val2017/ --out ar/\n"
        "  samkit eval proposals lvis_v1_val.json coco/ --model vit_h --out ar/\n"
        "      (LVIS: coco/ holds train2017/ and val2017/, as named by each image's coco_url)\n"
        "  samkit eval proposals instances.json images/ --limit 20 --points-per-side 16 "
        "--crop-n-layers 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("coco", metavar="COCO_JSON", help="COCO or LVIS instances file (ground truth)")
    p.add_argument("images", metavar="IMAGES", help="folder of its images")
    add_model_argument(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--out", type=out_dir, help="folder for results.md, results.csv and recall.png")
    p.add_argument(
        "--limit", type=bounded(int, 1), metavar="N", help="only the first N images with objects"
    )
    p.add_argument(
        "--budgets",
        type=positive_ints,
        default=[10, 100, 1000],
        help="proposals an image to score, AR@K for each (default 10,100,1000; the paper "
        "reports AR@1000); the best max(K) of each image are kept",
    )
    for name, kind, text in OPTIONS:
        default = PROPOSAL_SETTINGS[name]
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{text} (default {default:g})",
        )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .. import SamAutomaticMaskGenerator, load
    from .._atomic import atomic_path
    from ..eval import proposals as P
    from ..interrupt import images

    # Everything is checked before the model is loaded.
    if not Path(args.coco).is_file():
        raise ValueError(f"{args.coco}: no such file (the COCO instances JSON)")
    if not Path(args.images).is_dir():
        raise ValueError(f"{args.images}: no such folder (the images of {args.coco})")
    P.require_pycocotools()
    data = P.read_ground_truth(args.coco)
    image_ids = P.annotated_images(data)[: args.limit]
    if not image_ids:
        raise ValueError(f"{args.coco}: no image has an object (a non-crowd annotation)")
    coco_images = P.locate_images(data, image_ids, args.images)

    generator = SamAutomaticMaskGenerator(
        load(args.model, device=args.device, precision=args.precision),
        output_mode="coco_rle",
        **{name: getattr(args, name) for name, *_ in OPTIONS},
    )
    proposals = P.generate_proposals(
        generator, coco_images, max_proposals=max(args.budgets), progress=not args.no_progress
    )
    rows = P.proposal_recall(data, proposals, args.budgets, image_ids=image_ids)
    table = P.to_markdown(rows)
    settings = ", ".join(f"{name} {getattr(args, name):g}" for name, *_ in OPTIONS)
    summary = f"{len(proposals)} proposals for {images(len(image_ids))} ({args.model}: {settings})"
    print(summary)
    print(table, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "results.md") as tmp:
            tmp.write_text(f"{summary}\n\n{table}")
        P.write_csv(rows, out / "results.csv")
        P.plot_png(rows, out / "recall.png")
    return 0

"""`samkit boxes2masks`: a detector's boxes to instance masks (the SAM paper's §7.3 protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .arguments import DEVICE_HELP, add_model_argument, bounded, out_file


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "boxes2masks",
        help="turn a detector's boxes (COCO results JSON) into masks, optionally scoring mask AP",
        description="Prompt SAM with each detected box (one mask per box) and write the "
        "detections with a 'segmentation' (COCO RLE) added: COCO results format, as "
        "pycocotools' COCOeval reads it. The zero-shot instance segmentation protocol of the "
        "SAM paper (§7.3), which prompts with a detector's boxes. Without --detections the "
        "COCO file's own boxes are used, with score 1 (an oracle detector).",
        epilog="examples:\n"
        "  samkit boxes2masks instances.json images/ --detections dets.json --out results.json\n"
        "  samkit boxes2masks instances.json images/ --out results.json --score   # GT boxes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("coco", metavar="COCO_JSON", help="COCO instances file naming the images")
    p.add_argument("images", metavar="IMAGES", help="folder of its file_names")
    p.add_argument(
        "--detections",
        metavar="JSON",
        help="detections in COCO results format: [{image_id, category_id, bbox [x,y,w,h], "
        "score}] (default: COCO_JSON's annotations' boxes, score 1)",
    )
    p.add_argument("--out", type=out_file, required=True, help="results JSON to write")
    p.add_argument(
        "--score",
        action="store_true",
        help="also print mask AP against COCO_JSON's masks (needs pycocotools)",
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1),
        default=64,
        help="boxes decoded at once (default 64)",
    )
    add_model_argument(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(handler=_boxes2masks)


def _boxes2masks(args: argparse.Namespace) -> int:
    from .. import load
    from ..eval import boxes
    from ..interrupt import images
    from ..io import write_json
    from ..io.coco import read_coco
    from ..io.images import image_size

    # Everything is checked before the model is loaded.
    if not Path(args.coco).is_file():
        raise ValueError(f"{args.coco}: no such file (the COCO instances JSON)")
    coco = read_coco(args.coco)
    if not Path(args.images).is_dir():
        raise ValueError(f"{args.images}: no such folder (the images of {args.coco})")
    if args.detections is None:
        annotations = [a for anns in coco.annotations.values() for a in anns]
        detections = boxes.check_detections(
            boxes.ground_truth_detections(annotations), coco.images, where=f"{args.coco} boxes"
        )
    else:
        if not Path(args.detections).is_file():
            raise ValueError(f"{args.detections}: no such file (the detections JSON)")
        detections = boxes.read_detections(args.detections, coco.images)
    if args.score:
        _require_pycocotools()
        if not detections:
            raise ValueError("--score: there are no detections to score")
    used = dict.fromkeys(d["image_id"] for d in detections)
    coco_images: list[tuple[int, Path]] = []
    for image_id in used:
        info: dict[str, Any] = coco.images[image_id]
        path = Path(args.images) / str(info["file_name"])
        if not path.is_file():
            raise ValueError(f"image {image_id}: {path} does not exist")
        width, height = image_size(path)
        if (width, height) != (int(info["width"]), int(info["height"])):
            raise ValueError(
                f"image {image_id}: {path} is {width}x{height} but {args.coco} says "
                f"{info['width']}x{info['height']} (width x height)"
            )
        coco_images.append((image_id, path))

    results = boxes.segment_detections(
        load(args.model, device=args.device),
        coco_images,
        detections,
        batch_size=args.batch_size,
    )
    write_json(args.out, results)
    masks = f"{len(results)} mask" + ("" if len(results) == 1 else "s")
    print(f"{masks} of {images(len(coco_images))} written to {args.out}")
    if args.score:
        print(boxes.ap_markdown(boxes.mask_ap(args.coco, results)), end="")
    return 0


def _require_pycocotools() -> None:
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "--score needs pycocotools: pip install pycocotools (or 'samkit[eval]')"
        ) from None

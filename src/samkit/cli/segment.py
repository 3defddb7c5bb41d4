"""`samkit segment`: one object from points and/or a box, to a PNG mask."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .arguments import floats, xy


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one object in an image from points and/or a box",
        description="Segment the object at the given prompts and write its mask as a PNG. "
        "Prints the predicted IoU (score) of the chosen mask.",
        epilog="example:\n  samkit segment photo.jpg --model vit_b --point 420,310 "
        "--neg 100,80 --multimask --out mask.png --overlay overlay.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="image file (any format Pillow reads)")
    p.add_argument("--model", default="vit_h", help="model name or weights file (default vit_h)")
    p.add_argument(
        "--point",
        action="append",
        type=xy,
        default=[],
        metavar="X,Y",
        help="foreground point in pixels (repeatable)",
    )
    p.add_argument(
        "--neg",
        action="append",
        type=xy,
        default=[],
        metavar="X,Y",
        help="background point in pixels (repeatable)",
    )
    p.add_argument("--box", type=floats(4), metavar="X0,Y0,X1,Y1", help="box in pixels")
    p.add_argument(
        "--multimask",
        action="store_true",
        help="predict 3 candidate masks and keep the highest-scoring one",
    )
    p.add_argument("--out", required=True, help="where to write the mask PNG (0/255)")
    p.add_argument("--overlay", help="also write the image with the mask and prompts drawn")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.set_defaults(handler=_segment)


def _segment(args: argparse.Namespace) -> int:
    from .. import SamPredictor, load
    from ..io import load_image
    from ..io.render import render_overlay, save_image, save_mask_png
    from ..loading import SEEDED_VARIANTS

    if not args.point and not args.neg and args.box is None:
        raise ValueError("give at least one prompt: --point X,Y, --neg X,Y or --box X0,Y0,X1,Y1")
    image = load_image(args.image)
    if args.model in SEEDED_VARIANTS:
        print(
            f"note: {args.model} has seeded random weights, not trained ones: its masks "
            "only show that the pipeline runs",
            file=sys.stderr,
        )
    predictor = SamPredictor(load(args.model, device=args.device))
    predictor.set_image(image)
    points = args.point + args.neg
    coords = np.array(points, dtype=float) if points else None
    labels = np.array([1] * len(args.point) + [0] * len(args.neg)) if points else None
    box = np.array(args.box) if args.box is not None else None
    masks, scores, _ = predictor.predict(
        point_coords=coords, point_labels=labels, box=box, multimask_output=args.multimask
    )
    best = int(np.argmax(scores))
    save_mask_png(masks[best], args.out)
    if args.overlay:
        save_image(render_overlay(image, masks[best], coords, labels, box), args.overlay)
    area = int(masks[best].sum())
    print(f"score {scores[best]:.4f} (mask {best + 1} of {len(scores)}, {area} px) -> {args.out}")
    return 0

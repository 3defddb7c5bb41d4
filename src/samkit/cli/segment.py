"""`samkit segment`: one object from points, a box and/or a phrase, to a PNG mask."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .arguments import (
    DEVICE_HELP,
    add_backend_argument,
    add_embedding_cache_argument,
    add_max_pixels_argument,
    add_model_argument,
    embedding_cache,
    out_file,
    resolve_backend,
    xy,
    xyxy,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one object in an image from points, a box and/or a phrase",
        description="Segment the object at the given prompts and write its mask as a PNG. "
        "Prints the predicted IoU (score) of the chosen mask.",
        epilog="examples:\n  samkit segment photo.jpg --point 420,310 --out mask.png\n"
        "  samkit segment photo.jpg --model vit_b --point 420,310 --neg 100,80 --multimask \\\n"
        "      --out mask.png --overlay overlay.png\n"
        "  samkit segment shapes.png --model text_model.safetensors --text 'red disc' "
        "--out mask.png\n\n"
        "Points and boxes are in pixels, X to the right and Y down from the top-left corner,\n"
        "and must lie inside the image: 0 <= X <= width, 0 <= Y <= height.\n"
        "--text needs a model with a text head (trained for text prompts); a phrase names one\n"
        "object, so it gives one mask unless --multimask is given.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="image file (any format Pillow reads)")
    add_model_argument(p)
    add_backend_argument(p)
    p.add_argument(
        "--point",
        action="append",
        type=xy,
        default=[],
        metavar="X,Y",
        help="foreground point in pixels (repeatable; --point=X,Y works too)",
    )
    p.add_argument(
        "--neg",
        action="append",
        type=xy,
        default=[],
        metavar="X,Y",
        help="background point in pixels (repeatable)",
    )
    p.add_argument(
        "--box", type=xyxy, metavar="X0,Y0,X1,Y1", help="box in pixels: top-left, bottom-right"
    )
    p.add_argument(
        "--text",
        metavar="PHRASE",
        help="a phrase naming the object, e.g. 'red disc' (alone or with points/box; "
        "needs a model with a text head)",
    )
    p.add_argument(
        "--multimask",
        action="store_true",
        help="predict 3 candidate masks and keep the highest-scoring one",
    )
    p.add_argument(
        "--out", required=True, type=out_file, help="where to write the mask PNG (0/255)"
    )
    p.add_argument(
        "--overlay", type=out_file, help="also write the image with the mask and prompts drawn"
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    add_max_pixels_argument(p)
    add_embedding_cache_argument(p, "the image's embedding")
    p.set_defaults(handler=_segment)


def _segment(args: argparse.Namespace) -> int:
    from .. import SamPredictor, load
    from ..io import load_image
    from ..io.render import render_overlay, save_image, save_mask_png
    from ..loading import SEEDED_VARIANTS

    if not args.point and not args.neg and args.box is None and args.text is None:
        raise ValueError(
            "give at least one prompt: --point X,Y, --neg X,Y, --box X0,Y0,X1,Y1 or --text PHRASE"
        )
    if args.text is not None and not args.text.strip():
        raise ValueError("--text is empty; give a phrase such as --text 'red disc'")
    image = load_image(args.image, max_pixels=args.max_pixels)
    _check_inside(args, image.shape[1], image.shape[0])  # before the model loads
    if args.model in SEEDED_VARIANTS:
        print(
            f"note: {args.model} has seeded random weights, not trained ones: its masks "
            "only show that the pipeline runs",
            file=sys.stderr,
        )
    # Disk only: one command embeds one image.
    cache = embedding_cache(args)
    model = load(args.model, device=args.device, precision=args.precision)
    predictor = SamPredictor(model, cache=cache, backend=resolve_backend(args.backend, model))
    if args.text is not None:  # the text head and the phrase's length, before the image's work
        try:
            predictor.encode_text([args.text])
        except ValueError as err:
            raise ValueError(f"--text with --model {args.model}: {err}") from None
    predictor.set_image(image)
    points = args.point + args.neg
    coords = np.array(points, dtype=float) if points else None
    labels = np.array([1] * len(args.point) + [0] * len(args.neg)) if points else None
    box = np.array(args.box) if args.box is not None else None
    masks, scores, _ = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=box,
        multimask_output=args.multimask,
        text=args.text,
    )
    best = int(np.argmax(scores))
    save_mask_png(masks[best], args.out)
    if args.overlay:
        save_image(render_overlay(image, masks[best], coords, labels, box), args.overlay)
    area = int(masks[best].sum())
    print(f"score {scores[best]:.4f} (mask {best + 1} of {len(scores)}, {area} px) -> {args.out}")
    return 0


def _check_inside(args: argparse.Namespace, width: int, height: int) -> None:
    """Raise ValueError, with the image's size, for a point or box outside the image."""
    prompts = [("--point", p) for p in args.point] + [("--neg", p) for p in args.neg]
    if args.box is not None:
        prompts.append(("--box", args.box))
    for flag, values in prompts:
        xs, ys = values[0::2], values[1::2]
        if min(xs) < 0 or max(xs) > width or min(ys) < 0 or max(ys) > height:
            given = ",".join(f"{v:g}" for v in values)
            raise ValueError(
                f"{flag} {given} lies outside the image: {args.image} is {width}x{height} "
                f"pixels, so X must be within 0..{width} and Y within 0..{height}"
            )

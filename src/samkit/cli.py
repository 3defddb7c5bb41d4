"""The `samkit` command. Thin: parse arguments, call the library, print results."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence

import numpy as np

from . import __version__, cli_engine, cli_export, cli_train

EXAMPLES = """\
examples:
  samkit segment photo.jpg --model vit_b --point 420,310 --multimask --out mask.png
  samkit segment photo.jpg --model sam_vit_b_01ec64.pth --box 50,60,400,380 --out mask.png \\
      --overlay overlay.png
  samkit weights list
  samkit weights get vit_b
  samkit weights convert sam_vit_b_01ec64.pth sam_vit_b.safetensors
  samkit serve photos/ --model vit_b
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"samkit: error: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samkit",
        description="Segment Anything: promptable segmentation, fast on CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"samkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_amg(sub)
    cli_train.add_eval(sub)
    cli_train.add_finetune(sub)
    cli_export.add_export(sub)
    cli_engine.add_commands(sub)
    _add_weights(sub)
    _add_serve(sub)
    return parser


# -- segment -------------------------------------------------------------------------------
def _add_segment(sub: argparse._SubParsersAction) -> None:
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
        type=_xy,
        default=[],
        metavar="X,Y",
        help="foreground point in pixels (repeatable)",
    )
    p.add_argument(
        "--neg",
        action="append",
        type=_xy,
        default=[],
        metavar="X,Y",
        help="background point in pixels (repeatable)",
    )
    p.add_argument("--box", type=_floats(4), metavar="X0,Y0,X1,Y1", help="box in pixels")
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
    from . import SamPredictor, load
    from .io import load_image
    from .io.render import render_overlay, save_image, save_mask_png
    from .loading import SEEDED_VARIANTS

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


# -- amg -----------------------------------------------------------------------------------
# The generator's arguments the CLI exposes: (name, type, help). Their defaults are not
# repeated here: `amg_options` reads them from SamAutomaticMaskGenerator's signature.
AMG_HELP: list[tuple[str, type, str]] = [
    ("points_per_side", int, "grid points along each side of the image"),
    ("points_per_batch", int, "points run through the decoder at once"),
    ("pred_iou_thresh", float, "keep masks whose predicted IoU is above this"),
    ("stability_score_thresh", float, "keep masks at least this stable"),
    ("stability_score_offset", float, "logit offset for the stability score"),
    ("box_nms_thresh", float, "box IoU for NMS within a crop"),
    ("crop_n_layers", int, "zoomed crop layers (0: the whole image only)"),
    ("crop_nms_thresh", float, "box IoU for NMS across crops"),
    ("crop_overlap_ratio", float, "overlap of neighbouring crops"),
    ("crop_n_points_downscale_factor", int, "fewer points per side in deeper crop layers"),
    ("min_mask_region_area", int, "remove holes/islands smaller than this (pixels)"),
]


def amg_options() -> list[tuple[str, type, object, str]]:
    """(name, type, default, help) of each option in AMG_HELP, the default being
    SamAutomaticMaskGenerator's own."""
    from .automatic import SamAutomaticMaskGenerator

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return [(name, kind, params[name].default, text) for name, kind, text in AMG_HELP]


AMG_OPTIONS = amg_options()


def _add_amg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "amg",
        help="segment everything in many images (automatic mask generation)",
        description="Run the automatic mask generator over images, folders (recursive) or "
        ".txt lists of paths. Resumable: images whose output exists are skipped. A bad image "
        "is reported (failures.jsonl) and skipped; the exit code is 1 if any failed.",
        epilog="examples:\n  samkit amg photos/ --out masks/ --model vit_b --format sa1b\n"
        "  samkit amg list.txt --out coco/ --model vit_b --format coco --crop-n-layers 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files, folders, or .txt lists of paths")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="vit_h", help="model name or weights file (default vit_h)")
    p.add_argument(
        "--format",
        default="sa1b",
        choices=["sa1b", "coco", "png", "yolo"],
        help="sa1b: a JSON per image; coco: one annotations.json; png: a folder per "
        "image as the official amg.py writes; yolo: YOLO-seg txt (default sa1b)",
    )
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also draw each image's masks in colour to OUT/overlays/<name>.png",
    )
    for name, kind, default, text in AMG_OPTIONS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{text} (default {default:.4g})",
        )
    p.set_defaults(handler=_amg)


def _amg(args: argparse.Namespace) -> int:
    from . import SamAutomaticMaskGenerator, load
    from .runner import collect_inputs, run_amg

    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise ValueError(f"no images found in {', '.join(args.inputs)}")
    options = {name: getattr(args, name) for name, *_ in AMG_OPTIONS}
    generator = SamAutomaticMaskGenerator(
        load(args.model, device=args.device), output_mode="coco_rle", **options
    )
    summary = run_amg(
        inputs,
        args.out,
        generator,
        args.format,
        progress=not args.no_progress,
        overlays=args.overlays,
    )
    for path, error in summary.failed:
        print(f"failed: {path}: {error}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


# -- weights -------------------------------------------------------------------------------
def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights",
        help="list, download, locate and convert model weights",
        description="Official SAM weights are cached under $SAMKIT_HOME (default "
        "~/.cache/samkit). Set SAMKIT_WEIGHTS_MIRROR to fetch them from another server.",
        epilog="examples:\n  samkit weights list\n  samkit weights get vit_b\n"
        "  samkit weights path vit_b\n  samkit weights convert in.pth out.safetensors\n"
        "  samkit weights convert in.pth model.safetensors --to hf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wsub = p.add_subparsers(dest="weights_command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    wsub.add_parser(
        "list",
        help="known weights and whether each is cached",
        epilog="example:\n  samkit weights list",
        formatter_class=raw,
    ).set_defaults(handler=_weights_list)
    for name, handler, text in (
        ("path", _weights_path, "print the cached file's path (exit 1 if absent)"),
        ("get", _weights_get, "download into the cache, verifying sha256"),
    ):
        wp = wsub.add_parser(
            name, help=text, epilog=f"example:\n  samkit weights {name} vit_b", formatter_class=raw
        )
        wp.add_argument("name", help="weights name, e.g. vit_b")
        wp.set_defaults(handler=handler)
    cp = wsub.add_parser(
        "convert",
        help="convert .pth <-> .safetensors, and between the samkit and Hugging Face layouts",
        epilog="examples:\n  samkit weights convert sam_vit_b_01ec64.pth sam_vit_b.safetensors\n"
        "  samkit weights convert sam_vit_b_01ec64.pth model.safetensors --to hf",
        formatter_class=raw,
    )
    cp.add_argument("src", help="input weights (.pth/.pt or .safetensors), any layout")
    cp.add_argument("dst", help="output file; .safetensors or .pth")
    cp.add_argument(
        "--to",
        choices=["samkit", "hf"],
        default=None,
        help="key names to write: samkit (official/MobileSAM) or hf (transformers SamModel); "
        "default: keep the input's",
    )
    cp.set_defaults(handler=_weights_convert)


def _weights_list(args: argparse.Namespace) -> int:
    from .checkpoints import KNOWN_WEIGHTS, cached_path

    for name, info in KNOWN_WEIGHTS.items():
        where = cached_path(name)
        state = str(where) if where else "not downloaded"
        print(f"{name:10s} {info.filename:28s} {state}")
    return 0


def _weights_path(args: argparse.Namespace) -> int:
    from .checkpoints import KNOWN_WEIGHTS, cache_dir, cached_path

    if args.name not in KNOWN_WEIGHTS:
        raise ValueError(f"unknown weights {args.name!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    where = cached_path(args.name)
    if where is None:
        print(
            f"samkit: {args.name} is not in {cache_dir() / 'weights'}; run "
            f"`samkit weights get {args.name}`",
            file=sys.stderr,
        )
        return 1
    print(where)
    return 0


def _weights_get(args: argparse.Namespace) -> int:
    from .checkpoints import download

    print(download(args.name))
    return 0


def _weights_convert(args: argparse.Namespace) -> int:
    from .checkpoints import convert

    convert(args.src, args.dst, layout=args.to)
    print(f"wrote {args.dst}")
    return 0


# -- serve ---------------------------------------------------------------------------------
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="interactive web annotator and HTTP API over a folder of images",
        description="Serve the annotator page and its JSON API (OpenAPI schema at /docs). "
        "Annotations are autosaved in FOLDER/.samkit/; exports go to FOLDER/.samkit/export/.",
        epilog="examples:\n  samkit serve photos/ --model vit_b\n"
        "  samkit serve photos/ --model samkit_tiny --port 8080 --host 0.0.0.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", nargs="?", default=".", help="folder of images (default: here)")
    p.add_argument(
        "--model", default="samkit_default", help="model name or weights file (samkit_default)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--max-pixels", type=int, default=200_000_000, help="largest image (pixels)")
    p.add_argument("--max-body-mb", type=int, default=64, help="largest request body (MiB)")
    p.add_argument("--cache-mb", type=int, default=1024, help="image embedding cache (MiB)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from . import load

    try:
        from .serve import create_app, run
    except ImportError as err:
        raise RuntimeError(
            f"samkit serve needs the serve extra: pip install 'samkit[serve]' ({err})"
        ) from err

    model = load(args.model, device=args.device)
    app = create_app(
        args.folder,
        model,
        model_name=args.model,
        max_body_bytes=args.max_body_mb << 20,
        max_pixels=args.max_pixels,
        cache_bytes=args.cache_mb << 20,
    )
    print(f"samkit annotator: http://{args.host}:{args.port}/  (API docs at /docs)")
    run(app, host=args.host, port=args.port)
    return 0


# -- argument types ------------------------------------------------------------------------
def _floats(n: int) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != n or not all(np.isfinite(values)):
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return values

    return parse


_xy = _floats(2)


if __name__ == "__main__":
    sys.exit(main())

"""`samkit amg`: segment everything in many images; the AMG options `samkit engine` shares."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from typing import Any

from .arguments import (
    DEVICE_HELP,
    add_backend_argument,
    add_embedding_cache_argument,
    add_max_pixels_argument,
    add_model_argument,
    bounded,
    embedding_cache,
    out_dir,
    resolve_backend,
)

# The generator's arguments the CLI exposes: (name, type with the values it takes, help).
# Their defaults are not repeated here: `amg_options` reads them from
# SamAutomaticMaskGenerator's signature, except the one in CLI_DEFAULTS.
AMG_HELP: list[tuple[str, Callable[[str], Any], str]] = [
    ("points_per_side", bounded(int, 1), "grid points along each side of the image"),
    ("points_per_batch", bounded(int, 1), "points run through the decoder at once"),
    ("pred_iou_thresh", bounded(float), "keep masks whose predicted IoU is above this"),
    ("stability_score_thresh", bounded(float, 0, 1), "keep masks at least this stable"),
    ("stability_score_offset", bounded(float), "logit offset for the stability score"),
    ("box_nms_thresh", bounded(float, 0, 1), "box IoU for NMS within a crop"),
    ("crop_n_layers", bounded(int, 0), "zoomed crop layers (0: the whole image only)"),
    ("crop_nms_thresh", bounded(float, 0, 1), "box IoU for NMS across crops"),
    ("crop_overlap_ratio", bounded(float, 0, 1), "overlap of neighbouring crops"),
    (
        "crop_n_points_downscale_factor",
        bounded(int, 1),
        "fewer points per side in deeper crop layers",
    ),
    (
        "min_mask_region_area",
        bounded(int, 0),
        "remove islands and fill holes smaller than this many pixels, the paper's "
        "post-processing (a mask whose every island is smaller keeps its largest). On by "
        "default here: a stray pixel far from a mask widens its box, and box NMS then keeps "
        "two copies of one object. 0 turns it off (the Python API's default, as Meta's)",
    ),
]

# The one deliberate difference between the command line's defaults and the generator's
# (which stay Meta's, for drop-in use). 100 px is the value Meta's AMG notebook uses; any value
# from 2 up removes the stray pixel that makes `make demo` give the red disc twice.
CLI_DEFAULTS: dict[str, object] = {"min_mask_region_area": 100}


def amg_options() -> list[tuple[str, Callable[[str], Any], object, str]]:
    """(name, type, default, help) of each option in AMG_HELP, the default being
    SamAutomaticMaskGenerator's own unless CLI_DEFAULTS overrides it."""
    from ..automatic import SamAutomaticMaskGenerator

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return [
        (name, kind, CLI_DEFAULTS.get(name, params[name].default), text)
        for name, kind, text in AMG_HELP
    ]


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "amg",
        help="segment everything in many images (automatic mask generation)",
        description="Run the automatic mask generator over images, folders (recursive) or "
        ".txt lists of paths. Resumable: images whose output exists are skipped, and a rerun "
        "with other settings is refused (see --overwrite). A bad image is reported "
        "(failures.jsonl) and skipped; the exit code is 1 if any failed. Ctrl-C or SIGTERM "
        "stops it cleanly (exit code 130 or 143).",
        epilog="examples:\n  samkit amg photos/ --out masks/\n"
        "  samkit amg photos/ --out masks/ --model vit_b --format sa1b\n"
        "  samkit amg list.txt --out coco/ --model vit_b --format coco --crop-n-layers 1\n\n"
        "The generator's options default to SamAutomaticMaskGenerator's (Meta's), except\n"
        "--min-mask-region-area: 100 here, 0 in Python.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files, folders, or .txt lists of paths")
    p.add_argument("--out", required=True, type=out_dir, help="output folder")
    add_model_argument(p)
    add_backend_argument(p)
    p.add_argument(
        "--format",
        default="sa1b",
        choices=["sa1b", "coco", "png", "yolo"],
        help="sa1b: a JSON per image; coco: one annotations.json; png: a folder per "
        "image as the official amg.py writes; yolo: YOLO-seg txt (default sa1b)",
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    add_max_pixels_argument(p)
    add_embedding_cache_argument(p, "each image's (and crop's) embedding")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also draw each image's masks in colour to OUT/overlays/<name>.png",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds outputs made with other settings (model, options, format): delete "
        "those of these inputs and make them again (without it such a rerun is refused)",
    )
    for name, kind, default, text in amg_options():
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{text} (default {default:.4g})",
        )
    p.set_defaults(handler=_amg)


def _amg(args: argparse.Namespace) -> int:
    from .. import SamAutomaticMaskGenerator, load
    from ..runner import amg_settings, collect_inputs, prepare_output, run_amg

    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise ValueError(f"no images found in {', '.join(args.inputs)}")
    options = {name: getattr(args, name) for name, *_ in AMG_HELP}
    settings = amg_settings(
        args.model,
        options,
        args.format,
        overlays=args.overlays,
        precision=args.precision,
        backend=args.backend,
    )
    prepare_output(args.out, settings, inputs, args.format, overwrite=args.overwrite)
    # Disk only: within one run each image and crop is embedded once anyway.
    cache = embedding_cache(args)
    model = load(args.model, device=args.device, precision=args.precision)
    backend = resolve_backend(args.backend, model)
    generator = SamAutomaticMaskGenerator(
        model, output_mode="coco_rle", cache=cache, backend=backend, **options
    )
    summary = run_amg(
        inputs,
        args.out,
        generator,
        args.format,
        progress=not args.no_progress,
        overlays=args.overlays,
        max_pixels=args.max_pixels,
    )
    for path, error in summary.failed:
        print(f"failed: {path}: {error}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0

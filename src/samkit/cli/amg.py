"""`samkit amg`: segment everything in many images; the AMG options `samkit engine` shares."""

from __future__ import annotations

import argparse
import inspect
import sys

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
    from ..automatic import SamAutomaticMaskGenerator

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return [(name, kind, params[name].default, text) for name, kind, text in AMG_HELP]



def add(sub: argparse._SubParsersAction) -> None:
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
    from ..runner import collect_inputs, run_amg

    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise ValueError(f"no images found in {', '.join(args.inputs)}")
    options = {name: getattr(args, name) for name, *_ in AMG_HELP}
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

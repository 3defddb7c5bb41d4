"""`samkit eval edges`: zero-shot edge detection on a BSDS500-layout folder, scored with the
BSDS boundary benchmark (ODS, OIS, AP, R50), as in the SAM paper (§7.2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import DEVICE_HELP, add_model_argument, bounded, out_dir


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-edges",
        prog="samkit eval edges",
        help="zero-shot edge detection on a BSDS folder (ODS, OIS, AP, R50)",
        description="The SAM paper's zero-shot edge detection: a grid of point prompts, "
        "redundant masks removed by NMS, Sobel on each mask's probability map at its outer "
        "boundary, the max over masks normalised to [0, 1] and thinned by edge NMS. Scored by "
        "the BSDS boundary benchmark: one-to-one matching within 0.0075 x the image diagonal "
        "at 99 thresholds; ODS (best F at one threshold for all images), OIS (each image at "
        "its best), AP (area under the precision-recall curve) and R50 (recall at 50% "
        "precision). Needs scipy (pip install scipy).",
        epilog="examples:\n  samkit eval edges bsds_test/ --model vit_h --out edges/\n"
        "  samkit eval edges shapes/ --limit 10 --points-per-side 8\n\n"
        "DIR holds images/<name>.jpg (or .png) and, for each image, groundTruth/<name>.mat\n"
        "(BSDS500: groundTruth{k}.Boundaries, one per annotator) or groundTruth/<name>.png\n"
        "and/or <name>_1.png, <name>_2.png, ... (boundary maps, non-zero = boundary).\n"
        "For BSDS500's test split: images/ -> BSR/BSDS500/data/images/test and\n"
        "groundTruth/ -> BSR/BSDS500/data/groundTruth/test (symbolic links will do).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="BSDS folder: images/ and groundTruth/")
    add_model_argument(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument(
        "--out",
        type=out_dir,
        metavar="DIR",
        help="folder for results.md, results.csv, pr_curve.csv and pr_curve.png",
    )
    p.add_argument(
        "--limit",
        type=bounded(int, 1),
        metavar="N",
        help="evaluate the first N images (by name) only",
    )
    p.add_argument(
        "--points-per-side",
        type=bounded(int, 1, 128),
        default=16,
        metavar="N",
        help="prompt grid points along each side (default 16, the paper's: 768 masks)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .. import load
    from .._atomic import atomic_path
    from ..eval import edge_match, edge_report, edges

    edge_match.require_scipy("samkit eval edges")
    items = edges.find_items(args.dir, args.limit)  # checked before the model loads
    thresholds = edge_match.thresholds()
    counts = edges.evaluate(
        load(args.model, device=args.device, precision=args.precision),
        items,
        thresholds,
        points_per_side=args.points_per_side,
        progress=not args.no_progress,
    )
    scores = edge_match.summarize(counts, thresholds)
    table = edge_report.to_markdown(scores, args.model, len(items))
    print(table, end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "results.md") as tmp:
            tmp.write_text(table)
        edge_report.write_csv(scores, args.model, len(items), out / "results.csv")
        edge_report.write_curve_csv(scores, out / "pr_curve.csv")
        edge_report.plot_png(scores, out / "pr_curve.png")
    return 0

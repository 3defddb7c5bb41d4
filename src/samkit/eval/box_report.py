"""The outputs of `samkit eval boxes` (the SAM paper's zero-shot instance segmentation, §7.4):
mask AP as a markdown table and a CSV, a PNG plot of AP at each IoU threshold, and the masks
in COCO results format."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..interrupt import images as count_images
from .boxes import IOU_THRESHOLDS, MaskAP, ap_markdown, percent
from .report import Line, line_plot

LEGEND = (
    "Mask AP in percent (pycocotools COCOeval, iouType segm): AP over IoU 0.50:0.95, AP50 and "
    "AP75 at one IoU, APs / APm / APl over objects under 32², 32² to 96², over 96² px"
)
LVIS_LEGEND = "; APr / APc / APf over LVIS's rare, common and frequent categories"


def to_markdown(ap: MaskAP, *, masks: int, images: int, boxes: str) -> str:
    """results.md: the AP table, the legend, and what was scored (`boxes` says where the
    boxes came from)."""
    counts = f"{masks} mask{'' if masks == 1 else 's'} of {count_images(images)}"
    legend = LEGEND + (LVIS_LEGEND if "APr" in ap.stats else "") + ". n/a: no ground truth."
    return f"{ap_markdown(ap.stats)}\n{legend}\n\n{counts}; boxes: {boxes}.\n"


def write_csv(ap: MaskAP, path: str | os.PathLike[str], *, masks: int, images: int) -> None:
    """One header line and one line of values in 0..1 ("nan": no ground truth): images,
    masks, the AP table's columns, then AP@T, the AP at each IoU threshold T."""
    head = ["images", "masks", *ap.stats, *(f"AP@{t:.2f}" for t in IOU_THRESHOLDS)]
    values = [*ap.stats.values(), *ap.by_iou["AP"]]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(head)
        writer.writerow([images, masks, *(f"{v:.4f}" for v in values)])


def plot_png(ap: MaskAP, path: str | os.PathLike[str], size: tuple[int, int] = (640, 420)) -> None:
    """AP against the IoU threshold 0.50..0.95, one line for all categories and one per LVIS
    frequency when there are some, drawn with Pillow."""
    lines = [Line(f"{name} {percent(ap.stats[name])}", curve) for name, curve in ap.by_iou.items()]
    ticks = [f"{t:.2f}" for t in IOU_THRESHOLDS]
    line_plot(path, ticks, lines, x_label="IoU threshold", y_label="AP", size=size)


def write_results(
    out: str | os.PathLike[str],
    ap: MaskAP,
    results: Sequence[Mapping[str, Any]],
    *,
    images: int,
    boxes: str,
) -> str:
    """Write into the folder `out`, each file atomically: results.md (`to_markdown`, which
    is returned), results.csv, ap.png and results.json (the masks, COCO results format)."""
    from ..io import write_json

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table = to_markdown(ap, masks=len(results), images=images, boxes=boxes)
    write_json(folder / "results.json", list(results))
    with atomic_path(folder / "results.md") as tmp:
        tmp.write_text(table)
    write_csv(ap, folder / "results.csv", masks=len(results), images=images)
    plot_png(ap, folder / "ap.png")
    return table

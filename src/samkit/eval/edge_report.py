"""The edge benchmark's results as markdown, CSV and a PNG of the precision-recall curve."""

from __future__ import annotations

import csv
import os

import numpy as np

from .._atomic import atomic_path
from .edge_match import EdgeScores, fmeasure

COLUMNS = ("model", "images", "ODS", "ODS threshold", "OIS", "AP", "R50")


def _cells(scores: EdgeScores, model: str, n_images: int) -> list[str]:
    return [
        model,
        str(n_images),
        f"{scores.ods:.3f}",
        f"{scores.ods_threshold:.3f}",
        f"{scores.ois:.3f}",
        f"{scores.ap:.3f}",
        f"{scores.r50:.3f}",
    ]


def to_markdown(scores: EdgeScores, model: str, n_images: int) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines.append("| " + " | ".join(_cells(scores, model, n_images)) + " |")
    return "\n".join(lines) + "\n"


def write_csv(scores: EdgeScores, model: str, n_images: int, path: str | os.PathLike[str]) -> None:
    """One header row (lower-case names) and one row of results."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([c.lower().replace(" ", "_") for c in COLUMNS])
        writer.writerow(_cells(scores, model, n_images))


def write_curve_csv(scores: EdgeScores, path: str | os.PathLike[str]) -> None:
    """The dataset's precision-recall curve: threshold, recall, precision, F at each threshold."""
    f_values = fmeasure(scores.recall, scores.precision)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["threshold", "recall", "precision", "f"])
        for row in zip(scores.thresholds, scores.recall, scores.precision, f_values, strict=True):
            writer.writerow([f"{v:.4f}" for v in row])


def plot_png(
    scores: EdgeScores, path: str | os.PathLike[str], size: tuple[int, int] = (480, 480)
) -> None:
    """Precision against recall with iso-F curves (grey, F = 0.1 ... 0.9) and the ODS point,
    drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 50, 20, 30, 45
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return (
            left + (w - left - right) * recall,
            top + (h - top - bottom) * (1.0 - precision),
        )

    for f in np.arange(0.1, 1.0, 0.1):  # iso-F: precision = f * r / (2r - f), r in (f/2, 1]
        r = np.linspace(f / 2 + 1e-3, 1, 100)
        p = f * r / (2 * r - f)
        draw.line([xy(a, b) for a, b in zip(r, p, strict=True) if b <= 1], fill=(210, 210, 210))
    draw.line([xy(0, 1), xy(0, 0), xy(1, 0)], fill="black")
    for tick in np.linspace(0, 1, 6):
        x, y = xy(tick, 0)
        draw.line([(x, y), (x, y + 4)], fill="black")
        draw.text((x - 8, y + 6), f"{tick:.1f}", fill="black")
        x, y = xy(0, tick)
        draw.line([(x - 4, y), (x, y)], fill="black")
        draw.text((x - 28, y - 6), f"{tick:.1f}", fill="black")
    draw.text(((w + left - right) / 2 - 18, h - 18), "recall", fill="black")
    draw.text((4, 8), "precision", fill="black")
    on = scores.recall > 0  # the thresholds where anything is found
    colour = (31, 119, 180)
    points = [xy(r, p) for r, p in zip(scores.recall[on], scores.precision[on], strict=True)]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    x, y = xy(scores.ods_recall, scores.ods_precision)
    draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
    label = f"ODS {scores.ods:.3f}  OIS {scores.ois:.3f}  AP {scores.ap:.3f}"
    draw.text(xy(0.03, 0.04), label, fill=colour)  # bottom left: where PR curves never go
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")

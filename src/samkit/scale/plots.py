"""Small PNG charts drawn with Pillow (no plotting library): bars and a heat map."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._atomic import atomic_path


def bar_chart_png(
    rows: Sequence[tuple[str, int]],
    title: str,
    path: str | os.PathLike[str],
    size: tuple[int, int] = (640, 360),
) -> None:
    """One bar per (label, count), labels under the bars, counts above them."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 50, 20, 44, 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 8), title, fill="black")
    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    peak = max([count for _, count in rows] + [1])
    slot = (w - left - right) / max(1, len(rows))
    for i, (label, count) in enumerate(rows):
        x0 = left + i * slot + slot * 0.15
        x1 = left + (i + 1) * slot - slot * 0.15
        y = h - bottom - (h - top - bottom) * count / peak
        draw.rectangle([x0, y, x1, h - bottom], fill=(31, 119, 180))
        draw.text((x0, y - 12), str(count), fill="black")
        # Long labels alternate between two lines so neighbours do not overlap.
        draw.text((x0, h - bottom + 6 + 14 * (i % 2)), label, fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def heat_map_png(
    grid: np.ndarray, title: str, path: str | os.PathLike[str], cell: int = 10
) -> None:
    """A (rows, cols) count grid as a grey-scale image (darker = more), with a title."""
    from PIL import Image, ImageDraw

    rows, cols = grid.shape
    scaled = grid.astype(float) / max(1.0, float(grid.max()))
    pixels = (255 * (1.0 - scaled)).astype(np.uint8).repeat(cell, 0).repeat(cell, 1)
    img = Image.new("RGB", (cols * cell + 20, rows * cell + 40), "white")
    img.paste(Image.fromarray(pixels).convert("RGB"), (10, 30))
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black")
    draw.rectangle([9, 29, 10 + cols * cell, 30 + rows * cell], outline="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")

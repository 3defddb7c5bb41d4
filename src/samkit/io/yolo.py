"""YOLO segmentation labels (the Ultralytics YOLO-seg txt format), one file per image.

One line per polygon: `class x1 y1 x2 y2 ...`, the class an int and the (X, Y) vertices
divided by the image width and height, so in [0, 1], with 6 decimals. Vertices are pixel
centres, as OpenCV's contours give them and as Ultralytics rasterises them (`cv2.fillPoly`).
The format has one polygon per line, so a record whose mask has several parts gives several
lines, one per part, with the same class. The format has no holes: only each part's outer
ring is written (a ring-shaped mask comes back filled in). Parts without an outline of 3 or
more vertices (1-pixel-wide lines, pieces of 1 or 2 pixels) and empty masks give no line;
`write_yolo` returns the records that gave none, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..masks import Polygon, mask_to_polygons, polygons_to_mask
from ._records import record_mask


def write_yolo(
    path: str | os.PathLike[str],
    records: Iterable[Mapping[str, Any]],
    h: int,
    w: int,
    class_id: int | Sequence[int] = 0,
    *,
    tolerance: float = 0.0,
) -> list[tuple[int, str]]:
    """Write the records' outlines as a YOLO-seg label file, atomically.

    `class_id` is one class for every record or one per record. `tolerance` (pixels) is
    passed to `mask_to_polygons` to simplify outlines; 0 keeps every vertex.
    Returns (record index, reason) for each record that gave no line, in record order.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"h and w must be positive; got {h}x{w}")
    records = list(records)
    classes = [class_id] * len(records) if isinstance(class_id, int) else list(class_id)
    if len(classes) != len(records):
        raise ValueError(f"class_id has {len(classes)} entries for {len(records)} records")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in classes):
        raise ValueError(f"class ids must be non-negative ints; got {classes}")
    scale = np.array([w, h], dtype=np.float64)
    lines: list[str] = []
    skipped: list[tuple[int, str]] = []
    for i, (record, cls) in enumerate(zip(records, classes, strict=True)):
        mask = record_mask(record, f"write_yolo: record {i}", (h, w))
        written = len(lines)
        for poly in mask_to_polygons(mask, tolerance=tolerance):
            ring = np.asarray(poly.exterior, dtype=np.float64).reshape(-1, 2)
            if len(ring) < 3:
                continue
            xy = np.clip(ring / scale, 0.0, 1.0).reshape(-1)
            lines.append(" ".join([str(cls), *(f"{v:.6f}" for v in xy)]))
        if len(lines) == written:
            area = int(np.count_nonzero(mask))
            skipped.append((i, _no_outline(area)))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return skipped


def _no_outline(area: int) -> str:
    if area == 0:
        return "the mask is empty"
    return (
        f"no part of the mask ({area} px) has an outline of 3 or more vertices (1-pixel-wide "
        "lines and pieces of 1 or 2 pixels): YOLO-seg cannot hold it; export COCO, SA-1B or PNG"
    )


def read_yolo(path: str | os.PathLike[str], h: int, w: int) -> list[tuple[int, np.ndarray]]:
    """Read a YOLO-seg label file: [(class, Nx2 float (X, Y) pixel polygon)], in file order.

    Blank lines are skipped. A line that is not `int` then an even number (>= 6) of
    coordinates in [0, 1] raises ValueError naming the file and line.
    """
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not a text file: {e}") from e
    scale = np.array([w, h], dtype=np.float64)
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{name}:{n}"
        try:
            cls = int(parts[0])
            coords = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{where}: expected 'class x1 y1 x2 y2 ...'; got {line!r}") from None
        if cls < 0:
            raise ValueError(f"{where}: class must be a non-negative int; got {parts[0]!r}")
        if coords.size < 6 or coords.size % 2:
            raise ValueError(
                f"{where}: a polygon needs an even number (>= 6) of coordinates; got {coords.size}"
            )
        if not (np.isfinite(coords).all() and coords.min() >= 0.0 and coords.max() <= 1.0):
            raise ValueError(f"{where}: coordinates must be normalised to [0, 1]")
        out.append((cls, coords.reshape(-1, 2) * scale))
    return out


def yolo_masks(entries: Iterable[tuple[int, np.ndarray]], h: int, w: int) -> list[np.ndarray]:
    """Rasterise `read_yolo` entries to HxW bool masks, one per line (holes are not kept)."""
    return [
        np.asarray(
            polygons_to_mask([Polygon(exterior=np.asarray(p, np.float64), holes=[])], h, w),
            dtype=bool,
        )
        for _, p in entries
    ]

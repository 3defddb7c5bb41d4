"""PNG outputs: the folder layout of Meta's `scripts/amg.py`, and a single 16-bit label map.

Folder layout (`write_png_folder`), as the official script writes it for one image:

    <folder>/0.png, 1.png, ...   one 8-bit grayscale PNG per record, 0 = out, 255 = in
    <folder>/metadata.csv        header `METADATA_HEADER`, then one row per record, in order

Each row is the record's fields written with `str()`, as the official script does (so a bbox
of ints stays `10`, a float `10.0`); the file has no trailing newline. `id` is the record's
index and names its PNG.

Label map (`write_label_map`): one HxW 16-bit PNG (Pillow mode "I;16"), 0 = background and
`i + 1` where record `i` is. Records are painted largest first, so where masks overlap the
smaller one shows; up to 65535 records.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._atomic import atomic_path
from ._records import record_mask, sam_fields

METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)
_COLUMNS = METADATA_HEADER.split(",")
MAX_LABELS = 65535


def write_png_folder(folder: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Write `records` as `{i}.png` masks plus `metadata.csv` in `folder` (created if needed).

    Every record needs `segmentation` (HxW bool array or COCO RLE) and the AMG fields. Each
    file is written atomically and `metadata.csv` last, so a folder with a metadata file has
    all its PNGs. PNGs of an earlier, longer run are not removed; `metadata.csv` lists the
    current ones.
    """
    folder = Path(folder)
    records = list(records)
    rows = [METADATA_HEADER]
    for i, record in enumerate(records):
        where = f"write_png_folder: record {i}"
        fields = sam_fields(record, where)  # validates; the raw values keep their int/float
        row = [i, fields["area"], *_raw(record["bbox"]), *_raw(record["point_coords"])[:2]]
        row += [fields["predicted_iou"], fields["stability_score"], *_raw(record["crop_box"])]
        rows.append(",".join(_fmt(v) for v in row))
    folder.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records):  # one decoded mask in memory at a time
        mask = record_mask(record, f"write_png_folder: record {i}")
        _save_png(np.where(mask, 255, 0).astype(np.uint8), folder / f"{i}.png")
    with atomic_path(folder / "metadata.csv") as tmp:
        tmp.write_text("\n".join(rows), encoding="utf-8")


def read_png_folder(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a folder written by `write_png_folder` or the official `scripts/amg.py`.

    Returns records in `metadata.csv` order with `segmentation` (HxW bool, pixel != 0),
    `area` (int), `bbox` and `crop_box` (XYWH), `point_coords` ([[x, y]]), `predicted_iou`
    and `stability_score`; integral numbers come back as ints, others as floats.
    """
    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise ValueError(f"{folder}: no metadata.csv; not a PNG mask folder")
    with open(meta, encoding="utf-8", newline="") as f:
        lines = [row for row in csv.reader(f) if row]
    if not lines or lines[0] != _COLUMNS:
        got = ",".join(lines[0]) if lines else "an empty file"
        raise ValueError(f"{meta}: header must be {METADATA_HEADER!r}; got {got!r}")
    records = []
    shape = None
    for n, row in enumerate(lines[1:], start=2):
        if len(row) != len(_COLUMNS):
            raise ValueError(f"{meta}:{n}: expected {len(_COLUMNS)} fields; got {len(row)}")
        v = [_number(text, f"{meta}:{n} {col!r}") for text, col in zip(row, _COLUMNS, strict=True)]
        if not isinstance(v[0], int) or not isinstance(v[1], int):
            raise ValueError(f"{meta}:{n}: 'id' and 'area' must be integers; got {row[:2]}")
        mask = _load_mask(folder / f"{v[0]}.png")
        if shape is not None and mask.shape != shape:
            raise ValueError(f"{folder}: {v[0]}.png is {mask.shape}, others are {shape}")
        shape = mask.shape
        records.append(
            {
                "segmentation": mask,
                "area": v[1],
                "bbox": v[2:6],
                "point_coords": [v[6:8]],
                "predicted_iou": float(v[8]),
                "stability_score": float(v[9]),
                "crop_box": v[10:14],
            }
        )
    return records


def write_label_map(
    path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], h: int, w: int
) -> None:
    """Write an HxW 16-bit label PNG: 0 background, `i + 1` where record `i`'s mask is.

    Larger masks (by pixel count) are painted first, so smaller ones stay visible on top.
    """
    if len(records) > MAX_LABELS:
        raise ValueError(f"a 16-bit label map holds at most {MAX_LABELS} masks; got {len(records)}")
    masks = [record_mask(r, f"write_label_map: record {i}", (h, w)) for i, r in enumerate(records)]
    labels = np.zeros((h, w), dtype=np.uint16)
    areas = np.array([m.sum() for m in masks], dtype=np.int64)
    for i in np.argsort(-areas, kind="stable"):
        labels[masks[i]] = i + 1
    _save_png(labels, path)


def read_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label PNG as an HxW uint16 array (0 background, i + 1 for record i)."""
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{os.fspath(path)}: not a readable PNG: {e}") from e
    if arr.ndim != 2 or arr.dtype.kind not in "biu":
        raise ValueError(
            f"{os.fspath(path)}: a label map is a single-channel integer PNG; got "
            f"shape {arr.shape}, dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < 0 or arr.max() > MAX_LABELS):
        raise ValueError(f"{os.fspath(path)}: labels must be in 0..{MAX_LABELS}")
    return arr.astype(np.uint16)


def _save_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _load_mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: missing; metadata.csv lists it")
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable PNG: {e}") from e
    if arr.ndim != 2:
        raise ValueError(f"{path}: a mask PNG has one channel; got shape {arr.shape}")
    return arr != 0


def _raw(value: Any) -> list[Any]:
    """Flatten a (possibly nested) list or array of numbers, keeping ints as ints."""
    if isinstance(value, np.ndarray):
        return [v.item() for v in value.reshape(-1)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _raw(item)]
    return [value.item() if isinstance(value, np.generic) else value]


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return str(float(value))


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: not a number: {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: not a finite number: {text!r}")
    return value

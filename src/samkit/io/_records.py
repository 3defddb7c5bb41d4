"""Shared checks for the mask-record writers and readers (SA-1B, COCO, PNG, YOLO).

A *record* is one mask as `SamAutomaticMaskGenerator.generate` returns it: a dict with
`segmentation` (HxW bool array, or a COCO RLE dict {"size": [h, w], "counts": str}), `area`,
`bbox` (XYWH), `predicted_iou`, `point_coords` ([[x, y]]), `stability_score` and `crop_box`
(XYWH). Every failure is a ValueError that says where (file, record index) and what.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..masks import decode_coco_rle, encode_coco_rle

# The per-mask fields AMG produces besides the segmentation, in SA-1B's order.
SAM_FIELDS = ("bbox", "area", "predicted_iou", "point_coords", "crop_box", "stability_score")


def require_keys(obj: Any, keys: Iterable[str], where: str) -> None:
    """Raise unless `obj` is a dict holding every key in `keys`."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a JSON object (dict); got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")


def as_int(value: Any, where: str) -> int:
    """`value` as a Python int; floats must be whole (JSON writers sometimes emit 3.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected an integer; got {value!r}")
    if float(value) != int(value):
        raise ValueError(f"{where}: expected an integer; got {value!r}")
    return int(value)


def as_floats(value: Any, n: int, where: str) -> list[float]:
    """`value` as a list of exactly `n` finite Python floats."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {n} numbers; got {value!r}") from None
    if arr.size != n or not np.isfinite(arr).all():
        raise ValueError(f"{where}: expected {n} finite numbers; got {value!r}")
    return [float(v) for v in arr]


def as_points(value: Any, where: str) -> list[list[float]]:
    """`value` as [[x, y], ...] (at least one point) of Python floats."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected [[x, y]]; got {value!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1 or not np.isfinite(arr).all():
        raise ValueError(f"{where}: expected [[x, y]] (Nx2 finite numbers); got {value!r}")
    return [[float(x), float(y)] for x, y in arr]


def sam_fields(record: Any, where: str) -> dict[str, Any]:
    """The non-mask AMG fields of `record` as plain JSON types (floats, int area)."""
    require_keys(record, SAM_FIELDS, where)
    return {
        "bbox": as_floats(record["bbox"], 4, f"{where} 'bbox'"),
        "area": as_int(record["area"], f"{where} 'area'"),
        "predicted_iou": as_floats(record["predicted_iou"], 1, f"{where} 'predicted_iou'")[0],
        "point_coords": as_points(record["point_coords"], f"{where} 'point_coords'"),
        "crop_box": as_floats(record["crop_box"], 4, f"{where} 'crop_box'"),
        "stability_score": as_floats(record["stability_score"], 1, f"{where} 'stability_score'")[0],
    }


def check_rle(rle: Any, where: str, shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """Check the form of a COCO RLE dict (not its counts' content); return its (h, w)."""
    require_keys(rle, ("size", "counts"), where)
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"{where}: RLE 'size' must be [height, width]; got {size!r}")
    h, w = (as_int(v, f"{where} RLE 'size'") for v in size)
    if h < 0 or w < 0:
        raise ValueError(f"{where}: RLE 'size' must be non-negative; got {size!r}")
    if not isinstance(rle["counts"], (str, bytes, list)):
        raise ValueError(
            f"{where}: RLE 'counts' must be a string (compressed) or a list of ints "
            f"(uncompressed); got {type(rle['counts']).__name__}"
        )
    if shape is not None and (h, w) != tuple(shape):
        raise ValueError(f"{where}: RLE size [{h}, {w}] does not match the image {list(shape)}")
    return h, w


def decode_rle(rle: Any, where: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a COCO RLE (compressed or uncompressed) to HxW bool, with `where` in errors."""
    h, w = check_rle(rle, where, shape)
    try:
        return np.asarray(decode_coco_rle({"size": [h, w], "counts": rle["counts"]}), dtype=bool)
    except ValueError as e:
        raise ValueError(f"{where}: bad RLE: {e}") from e


def record_mask(record: Any, where: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The HxW bool mask of a record whose `segmentation` is an array or a COCO RLE."""
    require_keys(record, ("segmentation",), where)
    seg = record["segmentation"]
    if isinstance(seg, Mapping):
        return decode_rle(seg, f"{where} 'segmentation'", shape)
    mask = np.asarray(seg)
    if mask.ndim != 2:
        raise ValueError(f"{where}: 'segmentation' must be an HxW mask; got shape {mask.shape}")
    if shape is not None and mask.shape != tuple(shape):
        raise ValueError(
            f"{where}: 'segmentation' is {mask.shape[0]}x{mask.shape[1]} (HxW) but the image "
            f"is {shape[0]}x{shape[1]}"
        )
    return mask.astype(bool, copy=False)


def record_rle(record: Any, where: str, shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """The record's mask as a compressed COCO RLE {"size": [h, w], "counts": str}.

    A compressed RLE is passed through (bytes counts become str) without being decoded.
    """
    require_keys(record, ("segmentation",), where)
    seg = record["segmentation"]
    if isinstance(seg, Mapping) and isinstance(seg.get("counts"), (str, bytes)):
        h, w = check_rle(seg, f"{where} 'segmentation'", shape)
        counts = seg["counts"]
        if isinstance(counts, bytes):
            try:
                counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError(f"{where}: bad RLE: counts are not ASCII") from None
        return {"size": [h, w], "counts": counts}
    rle = encode_coco_rle(record_mask(record, where, shape))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": _text(counts)}


def _text(counts: Any) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; unreadable or malformed files raise ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.fspath(path)}: not valid JSON: {e}") from e


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as UTF-8 JSON atomically (the old file stays if anything fails)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, allow_nan=False)

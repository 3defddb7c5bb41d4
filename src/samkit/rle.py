"""Run-length encodings of binary masks, in COCO's layout.

Two forms of the same thing, both over the mask read in column-major (Fortran) order, the
first run always counting zeros (so a mask whose first pixel is set starts with a 0):

- uncompressed: ``{"size": [h, w], "counts": [int, ...]}``
- compressed:   ``{"size": [h, w], "counts": str}``, COCO's LEB128-like text form, where
  each count (after the first three, as a difference to the count two places before) is
  written in 5-bit groups, low group first, one character per group: ``chr(48 + group)``
  with bit 0x20 set while more groups follow and bit 0x10 of the last group the sign.

`encode_coco_rle` writes exactly the string `pycocotools.mask.encode` writes, and
`decode_coco_rle` reads both forms, rejecting anything malformed with a `ValueError`.
`samkit.masks` re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "area_from_rle",
    "coco_rle_from_uncompressed",
    "decode_coco_rle",
    "encode_coco_rle",
    "mask_to_rle",
    "rle_to_mask",
]

_MAX_GROUPS = 12  # 12 5-bit groups = 60 bits: far beyond any real count, and no int64 overflow


def mask_to_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Uncompressed RLE of each mask in a (B, H, W) batch (non-zero = inside).

    Returns B dicts ``{"size": [H, W], "counts": [int, ...]}``; equal to the official
    `mask_to_rle_pytorch`. Runs on the masks' device; one transfer to the CPU for the batch.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (B, H, W); got shape {tuple(masks.shape)}")
    b, h, w = masks.shape
    if b == 0:
        return []
    if h * w == 0:
        return [{"size": [h, w], "counts": [0]} for _ in range(b)]  # as pycocotools
    if masks.dtype != torch.bool:
        masks = masks != 0
    flat = masks.transpose(1, 2).reshape(b, h * w)  # (B, H*W), column-major
    rows, pos = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)  # sorted by row, then pos
    pos = pos + 1  # start of the run after each change
    # Each change closes a run that began at the previous change in the same row (or at 0).
    first_in_row = torch.ones_like(rows, dtype=torch.bool)
    first_in_row[1:] = rows[1:] != rows[:-1]
    prev = torch.where(first_in_row, torch.zeros_like(pos), pos.roll(1))
    closed = pos - prev
    # The last run of each row ends at H*W.
    last_start = torch.zeros(b, dtype=pos.dtype, device=pos.device)
    last_start.scatter_reduce_(0, rows, pos, reduce="amax")
    n_changes = torch.bincount(rows, minlength=b)
    closed_l: list[int] = closed.tolist()
    last_l: list[int] = (h * w - last_start).tolist()
    starts_set: list[bool] = flat[:, 0].tolist()
    ends: list[int] = torch.cumsum(n_changes, 0).tolist()
    out = []
    begin = 0
    for i in range(b):
        counts = [0] if starts_set[i] else []
        counts += closed_l[begin : ends[i]]
        counts.append(last_l[i])
        begin = ends[i]
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """(H, W) bool mask of an uncompressed RLE (a Fortran-ordered array, like official)."""
    h, w = _size(rle)
    counts = _uncompressed_counts(rle["counts"], h * w)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape(w, h).T


def area_from_rle(rle: Mapping[str, Any]) -> int:
    """Number of set pixels of an uncompressed RLE (the sum of its odd-indexed runs)."""
    return int(sum(rle["counts"][1::2]))


def encode_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE ``{"size": [h, w], "counts": str}`` of an (H, W) mask.

    Non-zero is inside. The string is byte-identical to
    ``pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {mask.shape}")
    h, w = mask.shape
    flat = mask.T.reshape(-1) != 0  # column-major
    if flat.size == 0:
        counts = np.zeros(1, dtype=np.int64)  # pycocotools writes one empty run
    else:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate(([0], change, [flat.size]))
        counts = np.diff(bounds)
        if flat[0]:
            counts = np.concatenate(([0], counts))
    return {"size": [h, w], "counts": _counts_to_string(counts)}


def coco_rle_from_uncompressed(rle: Mapping[str, Any]) -> dict[str, Any]:
    """Compressed COCO RLE (str counts) of an uncompressed one (list counts)."""
    h, w = _size(rle)
    counts = _uncompressed_counts(rle["counts"], h * w)
    return {"size": [h, w], "counts": _counts_to_string(counts)}


def decode_coco_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE, compressed (str or bytes counts) or not (int list).

    Reads whatever pycocotools writes; raises `ValueError` naming the problem for a missing
    key, a bad size, characters outside COCO's alphabet, a truncated count, negative counts
    or counts that do not add up to h * w.
    """
    h, w = _size(rle)
    raw = rle["counts"]
    if isinstance(raw, (str, bytes)):
        counts = _counts_from_string(raw)
        _check_counts(counts, h * w)
    else:
        counts = _uncompressed_counts(raw, h * w)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


def _size(rle: Any) -> tuple[int, int]:
    if not isinstance(rle, Mapping):
        raise ValueError(
            f"an RLE must be a dict with 'size' and 'counts'; got {type(rle).__name__}"
        )
    missing = [k for k in ("size", "counts") if k not in rle]
    if missing:
        raise ValueError(f"RLE is missing {missing}; it needs 'size' [h, w] and 'counts'")
    size = rle["size"]
    ok = isinstance(size, (list, tuple, np.ndarray)) and len(size) == 2
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    if not ok or min(size) < 0:
        raise ValueError(f"RLE 'size' must be [h, w], two non-negative ints; got {size!r}")
    return int(size[0]), int(size[1])


def _uncompressed_counts(raw: Any, n_pixels: int) -> np.ndarray:
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "iu" and raw.ndim == 1:
        counts = raw.astype(np.int64)
    elif isinstance(raw, (list, tuple)) and all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in raw
    ):
        counts = np.array(raw, dtype=np.int64) if raw else np.zeros(0, dtype=np.int64)
    else:
        raise ValueError(
            "RLE 'counts' must be a list of ints (uncompressed) or a str/bytes (compressed); "
            f"got {str(raw)[:60]}"
        )
    _check_counts(counts, n_pixels)
    return counts


def _check_counts(counts: np.ndarray, n_pixels: int) -> None:
    if (counts < 0).any():
        raise ValueError(f"RLE counts must be non-negative; got {int(counts.min())}")
    total = int(counts.sum())
    if total != n_pixels:
        raise ValueError(f"RLE counts add up to {total}, but size h * w is {n_pixels}")


def _counts_to_string(counts: np.ndarray) -> str:
    """COCO's text form of run lengths (pycocotools' rleToString)."""
    x = np.asarray(counts, dtype=np.int64).copy()
    if len(x) > 3:
        x[3:] -= np.asarray(counts, dtype=np.int64)[1:-2]  # delta to the run two back
    chars = []
    more = np.ones(len(x), dtype=bool)  # still writing this count
    while more.any():
        group = x & 0x1F
        x = x >> 5  # arithmetic shift: negative deltas stay negative
        sign = (group & 0x10) != 0
        cont = np.where(sign, x != -1, x != 0)
        char = np.where(more, 48 + (group | np.where(cont, 0x20, 0)), 0)
        chars.append(char)
        more &= cont
    if not chars:
        return ""
    grid = np.stack(chars, axis=1)  # (n_counts, n_groups), row-major = writing order
    return grid[grid != 0].astype(np.uint8).tobytes().decode("ascii")


def _counts_from_string(raw: str | bytes) -> np.ndarray:
    """Run lengths of COCO's text form (pycocotools' rleFrString), validated."""
    try:
        data = raw.encode("ascii") if isinstance(raw, str) else bytes(raw)
    except UnicodeEncodeError:
        raise ValueError("compressed RLE counts must be ASCII characters '0'..'o'") from None
    c = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        ch = chr(data[bad[0]])
        raise ValueError(
            f"compressed RLE counts has {ch!r} at {bad[0]}; COCO uses only characters '0'..'o'"
        )
    last = (c & 0x20) == 0  # the last group of each count
    if not last[-1]:
        raise ValueError("compressed RLE counts is truncated: its last count is unfinished")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_GROUPS:
        raise ValueError(f"compressed RLE has a count of {lengths.max()} groups; too large")
    k = np.arange(c.size) - np.repeat(starts, lengths)  # group index within its count
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * lengths)), x)
    if len(x) > 2:
        bound = np.int64(1) << 40  # deltas beyond this cannot be a real mask; avoid overflow
        if (np.abs(x) > bound).any():
            raise ValueError("compressed RLE has a count difference too large for any mask")
        x[1::2] = np.cumsum(x[1::2])  # undo the delta to the run two back (from run 3 on)
        x[2::2] = np.cumsum(x[2::2])
    return x

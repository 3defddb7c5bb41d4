"""SA-1B per-image JSON: the format Meta released the 1.1B masks of SA-1B in.

One file per image (`sa_<id>.json`), laid out as in the dataset's README:

    {"image": {"image_id": int, "width": int, "height": int, "file_name": str},
     "annotations": [{"id": int, "segmentation": {"size": [h, w], "counts": str},
                      "bbox": [x, y, w, h], "area": int, "predicted_iou": float,
                      "stability_score": float, "crop_box": [x, y, w, h],
                      "point_coords": [[x, y]]}, ...]}

`segmentation` is a compressed COCO RLE (column-major, as pycocotools writes it) of the full
image; boxes are XYWH pixels and points (X, Y) pixels. Numbers are written as SA-1B has them:
`area` and the ids as ints, boxes, points and scores as floats. Other fields of `image`
(metadata such as a region, or the boxes `samkit engine --deid` blurred) are kept as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._records import (
    SAM_FIELDS,
    as_int,
    check_rle,
    decode_rle,
    read_json,
    record_rle,
    require_keys,
    sam_fields,
    write_json,
)

IMAGE_FIELDS = ("image_id", "width", "height", "file_name")
ANNOTATION_FIELDS = ("id", "segmentation", *SAM_FIELDS)


def write_sa1b(
    path: str | os.PathLike[str],
    records: Iterable[Mapping[str, Any]],
    *,
    image: Mapping[str, Any],
    first_id: int = 0,
) -> None:
    """Write the AMG `records` of one image as an SA-1B JSON file, atomically.

    `image` holds `image_id`, `width`, `height` and `file_name`. A record's `segmentation` may
    be an HxW bool array or a COCO RLE dict; it must be `height` x `width`. Each annotation's
    `id` is the record's own `id` when it has one, else `first_id + index`. Every record needs
    the AMG fields (`bbox`, `area`, `predicted_iou`, `point_coords`, `crop_box`,
    `stability_score`); a missing one is a ValueError naming the record and the key.
    """
    info = _image_info(image, "write_sa1b: image")
    shape = (info["height"], info["width"])
    annotations = []
    for i, record in enumerate(records):
        where = f"write_sa1b: record {i}"
        require_keys(record, ("segmentation", *SAM_FIELDS), where)
        ann_id = as_int(record.get("id", first_id + i), f"{where} 'id'")
        annotations.append(
            {
                "id": ann_id,
                "segmentation": record_rle(record, where, shape),
                **sam_fields(record, where),
            }
        )
    write_json(path, {"image": info, "annotations": annotations})


def read_sa1b(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read an SA-1B JSON file: (image info, annotations with RLE `segmentation`).

    The structure is checked (keys present, types, every RLE's size equal to the image's);
    the RLE counts are decoded only by `sa1b_masks`. Raises ValueError naming the file and
    what is wrong or missing.
    """
    name = os.fspath(path)
    data = read_json(path)
    require_keys(data, ("image", "annotations"), name)
    info = _image_info(data["image"], f"{name}: 'image'")
    shape = (info["height"], info["width"])
    anns = data["annotations"]
    if not isinstance(anns, list):
        raise ValueError(f"{name}: 'annotations' must be a list; got {type(anns).__name__}")
    out = []
    for i, ann in enumerate(anns):
        where = f"{name}: annotation {i}"
        require_keys(ann, ANNOTATION_FIELDS, where)
        as_int(ann["id"], f"{where} 'id'")
        check_rle(ann["segmentation"], f"{where} 'segmentation'", shape)
        sam_fields(ann, where)  # checks types; the parsed JSON is returned unchanged
        out.append(dict(ann))
    return info, out


def sa1b_masks(
    annotations: Sequence[Mapping[str, Any]], *, name: str = "annotations"
) -> list[np.ndarray]:
    """Decode each annotation's RLE `segmentation` to an HxW bool mask (same order)."""
    masks = []
    for i, ann in enumerate(annotations):
        require_keys(ann, ("segmentation",), f"{name}[{i}]")
        masks.append(decode_rle(ann["segmentation"], f"{name}[{i}] 'segmentation'"))
    return masks


def _image_info(image: Any, where: str) -> dict[str, Any]:
    require_keys(image, IMAGE_FIELDS, where)
    info = {
        "image_id": as_int(image["image_id"], f"{where} 'image_id'"),
        "width": as_int(image["width"], f"{where} 'width'"),
        "height": as_int(image["height"], f"{where} 'height'"),
        "file_name": image["file_name"],
    }
    # Other image fields (metadata such as region, or de-identification boxes) are kept as is.
    info.update((k, v) for k, v in image.items() if k not in IMAGE_FIELDS)
    if not isinstance(info["file_name"], str):
        raise ValueError(f"{where}: 'file_name' must be a string; got {info['file_name']!r}")
    if info["width"] <= 0 or info["height"] <= 0:
        raise ValueError(f"{where}: width and height must be positive; got {image!r}")
    return info

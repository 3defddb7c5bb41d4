"""Image input: one loader from paths, bytes, PIL images and arrays to HxWx3 uint8 RGB; and the
mask formats SA-1B, COCO, the official amg.py PNG folder and label maps, YOLO-seg, and the
helpers they share (a record's mask as RLE, atomic JSON files); all but the image loader
are imported on first use: they need torch, the image loader does not."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from .images import DEFAULT_MAX_PIXELS, ImageError, image_size, load_image

_EXPORTS = {
    **dict.fromkeys(("CocoDataset", "CocoWriter", "annotation_to_mask", "read_coco"), ".coco"),
    **dict.fromkeys(
        ("read_label_map", "read_png_folder", "write_label_map", "write_png_folder"), ".png"
    ),
    **dict.fromkeys(("read_sa1b", "sa1b_masks", "write_sa1b"), ".sa1b"),
    **dict.fromkeys(("read_yolo", "write_yolo", "yolo_masks"), ".yolo"),
    **dict.fromkeys(
        (
            "as_floats",
            "as_int",
            "check_rle",
            "decode_rle",
            "read_json",
            "record_rle",
            "require_keys",
            "write_json",
        ),
        "._records",
    ),
}
__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CocoDataset",
    "CocoWriter",
    "ImageError",
    "annotation_to_mask",
    "as_floats",
    "as_int",
    "check_rle",
    "decode_rle",
    "image_size",
    "load_image",
    "read_coco",
    "read_json",
    "read_label_map",
    "read_png_folder",
    "read_sa1b",
    "read_yolo",
    "record_rle",
    "require_keys",
    "sa1b_masks",
    "write_json",
    "write_label_map",
    "write_png_folder",
    "write_sa1b",
    "write_yolo",
    "yolo_masks",
]
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ._records import (
        as_floats,
        as_int,
        check_rle,
        decode_rle,
        read_json,
        record_rle,
        require_keys,
        write_json,
    )
    from .coco import CocoDataset, CocoWriter, annotation_to_mask, read_coco
    from .png import read_label_map, read_png_folder, write_label_map, write_png_folder
    from .sa1b import read_sa1b, sa1b_masks, write_sa1b
    from .yolo import read_yolo, write_yolo, yolo_masks

"""Image input: one loader from paths, bytes, PIL images and arrays to HxWx3 uint8 RGB; and the
mask formats SA-1B, COCO, the official amg.py PNG folder and label maps, YOLO-seg (imported on
first use: they need torch, the image loader does not)."""

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
}
__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CocoDataset",
    "CocoWriter",
    "ImageError",
    "annotation_to_mask",
    "image_size",
    "load_image",
    "read_coco",
    "read_label_map",
    "read_png_folder",
    "read_sa1b",
    "read_yolo",
    "sa1b_masks",
    "write_label_map",
    "write_png_folder",
    "write_sa1b",
    "write_yolo",
    "yolo_masks",
]
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .coco import CocoDataset, CocoWriter, annotation_to_mask, read_coco
    from .png import read_label_map, read_png_folder, write_label_map, write_png_folder
    from .sa1b import read_sa1b, sa1b_masks, write_sa1b
    from .yolo import read_yolo, write_yolo, yolo_masks

"""Image input: one loader from paths, bytes, PIL images and arrays to HxWx3 uint8 RGB."""

from .images import DEFAULT_MAX_PIXELS, ImageError, image_size, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "image_size", "load_image"]

# Mask formats: SA-1B, COCO, the official amg.py PNG folder and label maps, YOLO-seg.
from .coco import CocoDataset, CocoWriter, annotation_to_mask, read_coco
from .png import read_label_map, read_png_folder, write_label_map, write_png_folder
from .sa1b import read_sa1b, sa1b_masks, write_sa1b
from .yolo import read_yolo, write_yolo, yolo_masks

__all__ += [
    "CocoDataset",
    "CocoWriter",
    "annotation_to_mask",
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

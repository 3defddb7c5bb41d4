"""Datasets on disk: an SA-1B-format folder and a COCO instances file, as indexable samples.

Both give `Sample`s whose `image` is HxWx3 uint8 RGB (through `samkit.io.load_image`) and
whose `masks` are (N, H, W) bool, like the synthetic scenes, so training and evaluation take
either. Images and masks are read lazily, one sample at a time.

An annotation's category, where the data has one, is its attributes' `category_name`:
CocoInstances takes it from the file's `categories`; SA-1B files have none, but one that adds
a `category_name`, `category` or `label` string to its annotations names it (read by the
function `category_name`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..io import load_image
from ..io.coco import annotation_to_mask, read_coco
from ..io.images import IMAGE_SUFFIXES
from ..io.sa1b import read_sa1b, sa1b_masks


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, H, W) bool, one per annotation, in file order
    ids: list[int]  # annotation ids, parallel to masks
    path: Path  # the image file
    attributes: list[dict[str, Any]]  # each annotation's other fields (no segmentation)


class SampleSource(Protocol):
    """Anything indexable that yields `Sample`s: SA1BFolder, CocoInstances, a list."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Sample: ...


def _stack(masks: list[np.ndarray], h: int, w: int, where: str) -> np.ndarray:
    for mask in masks:
        if mask.shape != (h, w):
            raise ValueError(
                f"{where}: a mask is {mask.shape[0]}x{mask.shape[1]}, the image {h}x{w}"
            )
    return np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)


def _attributes(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "segmentation"} for a in annotations]


CATEGORY_FIELDS = ("category_name", "category", "label")  # read in this order


def category_name(attributes: Mapping[str, Any]) -> str | None:
    """The category an annotation's fields name: the first of CATEGORY_FIELDS that is a
    non-empty string, with underscores read as spaces ("traffic_light" -> "traffic light");
    None when there is none (a numeric `category` is an id, not a name)."""
    for key in CATEGORY_FIELDS:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.replace("_", " ").split())
    return None


def annotation_attributes(dataset: SampleSource, index: int) -> list[dict[str, Any]]:
    """Sample `index`'s `attributes` (its annotations' fields but their segmentations): for an
    SA1BFolder or CocoInstances from the annotation file alone, no image or mask decoded; for
    any other source (a list of samples, a held-out subset) from the sample itself."""
    if isinstance(dataset, (SA1BFolder, CocoInstances)):
        return dataset.attributes(index)
    return dataset[index].attributes


class SA1BFolder:
    """Images with a same-named SA-1B JSON beside them (`sa_1.jpg` + `sa_1.json`), found
    recursively under `root`. Images without a JSON are not samples."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"SA-1B folder {self.root} does not exist")
        self.items = [
            (p, p.with_suffix(".json"))
            for p in sorted(self.root.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".json").is_file()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def attributes(self, index: int) -> list[dict[str, Any]]:
        """Sample `index`'s annotations' fields but their segmentations (its JSON only)."""
        return _attributes(read_sa1b(self.items[index][1])[1])

    def __getitem__(self, index: int) -> Sample:
        image_path, json_path = self.items[index]
        info, annotations = read_sa1b(json_path)
        image = load_image(image_path)
        h, w = image.shape[:2]
        if (info["height"], info["width"]) != (h, w):
            raise ValueError(
                f"{json_path}: says {info['height']}x{info['width']}, but {image_path.name} "
                f"is {h}x{w}"
            )
        masks = _stack(sa1b_masks(annotations, name=str(json_path)), h, w, str(json_path))
        return Sample(
            image, masks, [int(a["id"]) for a in annotations], image_path, _attributes(annotations)
        )


class CocoInstances:
    """A COCO instances JSON and the folder its `file_name`s are relative to. Polygons,
    compressed and uncompressed RLE are all decoded. Images without annotations are kept
    (their `masks` are empty) unless `skip_empty`."""

    def __init__(
        self,
        annotations: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        *,
        skip_empty: bool = False,
    ) -> None:
        self.coco = read_coco(annotations)
        self.images_dir = Path(images_dir)
        self.image_ids = [
            i for i in sorted(self.coco.images) if not skip_empty or self.coco.annotations.get(i)
        ]

    def __len__(self) -> int:
        return len(self.image_ids)

    def attributes(self, index: int) -> list[dict[str, Any]]:
        """Sample `index`'s annotations' fields but their segmentations, each with its
        category's name as `category_name` where the file's `categories` name it."""
        out = _attributes(self.coco.annotations.get(self.image_ids[index], []))
        for attributes in out:
            cid = attributes["category_id"]
            category = self.coco.categories.get(cid) if isinstance(cid, int) else None
            if category is not None and isinstance(category["name"], str):
                attributes["category_name"] = category["name"]
        return out

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        info = self.coco.images[image_id]
        path = self.images_dir / info["file_name"]
        image = load_image(path)
        h, w = image.shape[:2]
        anns = self.coco.annotations.get(image_id, [])
        masks = [annotation_to_mask(a, h, w) for a in anns]
        ids = [int(a["id"]) for a in anns]
        return Sample(image, _stack(masks, h, w, str(path)), ids, path, self.attributes(index))

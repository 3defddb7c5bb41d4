"""COCO instances JSON: many images' masks in one file, as pycocotools and most trainers read it.

    {"images": [{"id", "file_name", "width", "height"}],
     "annotations": [{"id", "image_id", "category_id", "segmentation", "area", "bbox",
                      "iscrowd"}],
     "categories": [{"id", "name"}]}

`segmentation` is one of COCO's three forms: polygons (a list of flat [x1, y1, x2, y2, ...]
rings, unioned), a compressed RLE ({"size": [h, w], "counts": str}) or an
uncompressed RLE ({"size": [h, w], "counts": [int, ...]}, usual with iscrowd=1). RLEs are
column-major, as pycocotools writes them.

Polygon coordinates differ by convention: a COCO polygon is drawn in continuous image
coordinates where pixel (x, y) is the square [x, x+1) x [y, y+1) (how pycocotools rasterises
it), while `samkit.masks.Polygon` rings run through the centres of the border pixels. So the
writer moves each ring by +0.5 and then half a pixel outward (the edges of the border pixels),
and the reader does the reverse. Writing the centre rings as they are, as many converters
do, shrinks every object by half a pixel all round when pycocotools draws it.

Writing polygons (`segmentation="polygon"`): COCO polygons cannot express holes, and a ring
needs at least 3 vertices (pycocotools reads a 4-number list as a box). So a mask is written
as polygons only when its outlines redraw it exactly (`polygons_to_mask`); one with a hole, a
piece of 1 or 2 pixels, a 1-pixel-thin part or no pixels at all is written as a compressed
RLE instead, which pycocotools accepts in any annotation. With `polygon_tolerance` > 0 the
outlines are simplified, so only the hole and empty checks apply and small pieces may be lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..masks import Polygon, encode_coco_rle, mask_to_polygons, polygons_to_mask
from ._records import (
    as_floats,
    as_int,
    check_rle,
    decode_rle,
    read_json,
    record_mask,
    require_keys,
    write_json,
)

DEFAULT_CATEGORIES: tuple[dict[str, Any], ...] = ({"id": 1, "name": "object"},)
# AMG fields copied into each annotation when a record has them (pycocotools ignores them).
_EXTRA_FIELDS = ("predicted_iou", "stability_score", "point_coords", "crop_box")


class CocoWriter:
    """Collect images and their mask records, then write one COCO instances JSON.

    >>> writer = CocoWriter()
    >>> image_id = writer.add_image("a.jpg", width, height, records)
    >>> writer.write("instances.json")

    Image and annotation ids count up from 1 in the order added.
    """

    def __init__(
        self,
        *,
        categories: Sequence[Mapping[str, Any]] | None = None,
        segmentation: Literal["rle", "polygon"] = "rle",
        polygon_tolerance: float = 0.0,
    ) -> None:
        if segmentation not in ("rle", "polygon"):
            raise ValueError(f"segmentation must be 'rle' or 'polygon'; got {segmentation!r}")
        cats = [dict(c) for c in (DEFAULT_CATEGORIES if categories is None else categories)]
        for i, cat in enumerate(cats):
            require_keys(cat, ("id", "name"), f"CocoWriter: categories[{i}]")
            cat["id"] = as_int(cat["id"], f"CocoWriter: categories[{i}] 'id'")
        self.categories = cats
        self.segmentation = segmentation
        self.polygon_tolerance = polygon_tolerance
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_image(
        self,
        file_name: str,
        width: int,
        height: int,
        records: Iterable[Mapping[str, Any]],
        category_id: int = 1,
    ) -> int:
        """Add one image and its records (all of category `category_id`); return its id.

        A record's `segmentation` is an HxW bool array or a COCO RLE, `height` x `width`.
        `area` is the mask's pixel count; `bbox` is the record's (XYWH) when it has one,
        else the mask's tight box as pycocotools computes it.
        """
        if category_id not in {c["id"] for c in self.categories}:
            raise ValueError(
                f"category_id {category_id} is not one of the categories "
                f"{[c['id'] for c in self.categories]}; pass categories=[...] to CocoWriter"
            )
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be positive; got {width}x{height}")
        image_id = len(self.images) + 1
        anns: list[dict[str, Any]] = []
        for i, record in enumerate(records):
            where = f"CocoWriter.add_image({file_name!r}): record {i}"
            mask = record_mask(record, where, (height, width))
            bbox = record.get("bbox")
            ann: dict[str, Any] = {
                "id": len(self.annotations) + len(anns) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "segmentation": self._segmentation(mask),
                "area": int(mask.sum()),
                "bbox": _mask_bbox(mask) if bbox is None else as_floats(bbox, 4, where),
                "iscrowd": 0,
            }
            for key in _EXTRA_FIELDS:
                if key in record:
                    ann[key] = np.asarray(record[key], dtype=np.float64).tolist()
            anns.append(ann)
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)}
        )
        self.annotations.extend(anns)
        return image_id

    def to_dict(self) -> dict[str, Any]:
        """The COCO JSON document as plain Python data."""
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write everything added so far to `path`, atomically."""
        write_json(path, self.to_dict())

    def _segmentation(self, mask: np.ndarray) -> Any:
        if self.segmentation == "polygon":
            rings = _polygon_rings(mask, self.polygon_tolerance)
            if rings is not None:
                return rings
        rle = encode_coco_rle(mask)
        counts = rle["counts"]
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return {"size": [int(v) for v in rle["size"]], "counts": counts}


@dataclass
class CocoDataset:
    """A parsed COCO instances file: images by id, each image's annotations in file order."""

    images: dict[int, dict[str, Any]]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    categories: dict[int, dict[str, Any]] = field(default_factory=dict)

    def masks(self, image_id: int) -> list[np.ndarray]:
        """HxW bool masks of the image's annotations, in the same order."""
        img = self.images[image_id]
        return [
            annotation_to_mask(a, img["height"], img["width"])
            for a in self.annotations.get(image_id, [])
        ]


def read_coco(path: str | os.PathLike[str]) -> CocoDataset:
    """Read and check a COCO instances JSON file.

    Checked: the three lists, the keys of every image, annotation and category, unique ids,
    annotations pointing at known images, and the form of every segmentation (RLE sizes equal
    to their image's). RLE counts are decoded only by `annotation_to_mask`. Raises ValueError
    naming the file and what is wrong.
    """
    name = os.fspath(path)
    data = read_json(path)
    require_keys(data, ("images", "annotations"), name)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"{name}: {key!r} must be a list; got {type(data[key]).__name__}")
    ds = CocoDataset(images={})
    for i, cat in enumerate(data.get("categories", [])):
        where = f"{name}: categories[{i}]"
        require_keys(cat, ("id", "name"), where)
        ds.categories[as_int(cat["id"], f"{where} 'id'")] = cat
    for i, img in enumerate(data["images"]):
        where = f"{name}: images[{i}]"
        require_keys(img, ("id", "width", "height", "file_name"), where)
        image_id = as_int(img["id"], f"{where} 'id'")
        if image_id in ds.images:
            raise ValueError(f"{where}: duplicate image id {image_id}")
        for key in ("width", "height"):
            if as_int(img[key], f"{where} {key!r}") <= 0:
                raise ValueError(f"{where}: {key!r} must be positive; got {img[key]!r}")
        ds.images[image_id] = img
        ds.annotations[image_id] = []
    seen: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"{name}: annotations[{i}]"
        require_keys(ann, ("id", "image_id", "category_id", "segmentation"), where)
        ann_id = as_int(ann["id"], f"{where} 'id'")
        if ann_id in seen:
            raise ValueError(f"{where}: duplicate annotation id {ann_id}")
        seen.add(ann_id)
        image_id = as_int(ann["image_id"], f"{where} 'image_id'")
        if image_id not in ds.images:
            raise ValueError(f"{where}: 'image_id' {image_id} is not in 'images'")
        img = ds.images[image_id]
        _check_segmentation(ann["segmentation"], where, (int(img["height"]), int(img["width"])))
        ds.annotations[image_id].append(ann)
    return ds


def annotation_to_mask(annotation: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """Rasterise one COCO annotation's `segmentation` to an HxW bool mask.

    Polygons (list of flat XY rings, unioned), compressed RLE (str counts) and uncompressed
    RLE (list counts, as with iscrowd=1) are accepted; an RLE must be `height` x `width`.
    """
    where = f"annotation {annotation.get('id', '?')}"
    require_keys(annotation, ("segmentation",), where)
    seg = annotation["segmentation"]
    _check_segmentation(seg, where, (height, width))
    if isinstance(seg, list):
        polys = [Polygon(exterior=_offset_ring(r, -0.5) - 0.5, holes=[]) for r in seg]
        return np.asarray(polygons_to_mask(polys, height, width), dtype=bool)
    return decode_rle(seg, f"{where} 'segmentation'", (height, width))


def _check_segmentation(seg: Any, where: str, shape: tuple[int, int]) -> None:
    if isinstance(seg, Mapping):
        check_rle(seg, f"{where} 'segmentation'", shape)
        return
    if not isinstance(seg, list):
        raise ValueError(
            f"{where}: 'segmentation' must be a list of polygons or an RLE dict; "
            f"got {type(seg).__name__}"
        )
    for j, ring in enumerate(seg):
        ok = isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ring)
        ok = ok and bool(np.isfinite(np.asarray(ring, dtype=np.float64)).all())
        if not ok:
            raise ValueError(
                f"{where}: polygon {j} must be a flat list [x1, y1, x2, y2, ...] of at least 3 "
                f"finite (X, Y) points; got {str(ring)[:80]}"
            )


def _polygon_rings(mask: np.ndarray, tolerance: float) -> list[list[float]] | None:
    """Flat COCO rings of the mask's outlines, or None when polygons cannot carry it."""
    polygons = mask_to_polygons(mask, tolerance=tolerance)
    if not polygons or any(p.holes for p in polygons):
        return None
    if tolerance == 0 and not np.array_equal(polygons_to_mask(polygons, *mask.shape), mask):
        return None  # a piece too small or thin to outline
    rings = []
    for p in polygons:
        ring = _offset_ring(np.asarray(p.exterior, np.float64) + 0.5, 0.5)
        if len(ring) < 3 or _twice_area(ring) == 0:
            return None  # a line of pixels: no inside to offset from
        rings.append([round(float(v), 3) for v in ring.reshape(-1)])
    return rings


def _offset_ring(ring: Any, d: float) -> np.ndarray:
    """Move each edge of a closed XY ring `d` pixels outward (inward for d < 0).

    Corners are mitred: a vertex moves to where its two moved edges meet. Where the ring turns
    back on itself by more than 120 degrees (the tip of a 1-pixel-wide spike), the outer side
    gets a square cap of two vertices instead of a long spike. Offsetting by +d then -d gives
    the original vertices back (caps collapse onto their vertex). Nx2 (X, Y) in, Mx2 out.
    """
    p = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    p = p[np.any(p != np.roll(p, 1, axis=0), axis=1)]  # no zero-length edges
    area2 = _twice_area(p)
    if len(p) < 3 or area2 == 0:
        return p
    s = 1.0 if area2 > 0 else -1.0  # orientation, so that normals point outward
    t_in = p - np.roll(p, 1, axis=0)  # (N, 2) direction of the edge arriving at each vertex
    t_in /= np.linalg.norm(t_in, axis=1, keepdims=True)
    t_out = np.roll(t_in, -1, axis=0)  # direction of the edge leaving it
    n_in = s * np.stack([t_in[:, 1], -t_in[:, 0]], axis=1)
    n_out = s * np.stack([t_out[:, 1], -t_out[:, 0]], axis=1)
    k = 1.0 + (n_in * n_out).sum(axis=1)  # 2 for a straight line, 0 for a full reversal
    turn = s * (t_in[:, 0] * t_out[:, 1] - t_in[:, 1] * t_out[:, 0])  # > 0 convex
    out: list[np.ndarray] = []
    for i in range(len(p)):
        if k[i] < 0.5 and turn[i] * d >= 0:  # sharp, and offsetting to its outer side
            out += [p[i] + d * (n_in[i] + t_in[i]), p[i] + d * (n_out[i] - t_out[i])]
        else:
            out.append(p[i] + d * (n_in[i] + n_out[i]) / max(k[i], 0.5))
    return np.array(out)


def _twice_area(ring: np.ndarray) -> float:
    """Signed shoelace area x 2 of an Nx2 ring."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight XYWH box as pycocotools' toBbox: width = x_max - x_min + 1; empty -> zeros."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) - x0 + 1, float(ys.max()) - y0 + 1]

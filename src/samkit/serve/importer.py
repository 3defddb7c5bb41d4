"""Import COCO and SA-1B annotations into the annotator's project, to continue or correct them.

`POST /api/import` takes one JSON document as its body (`samkit serve --import FILE` reads
it from a file); which of the two it is follows from its keys:

- COCO instances: {"images": [{"id", "file_name", "width"?, "height"?}],
  "annotations": [{"id"?, "image_id", "category_id", "segmentation", "iscrowd"?}],
  "categories": [{"id", "name"}]}; `segmentation` a compressed or uncompressed RLE, or
  polygons (flat [x1, y1, ...] rings in COCO's pixel-edge convention, rasterised as
  `samkit.io.annotation_to_mask` does).
- SA-1B, one image: {"image": {"file_name", "width"?, "height"?}, "annotations":
  [{"segmentation": RLE, "label"?}]}; the label is "object" when there is none.
A COCO results list (a bare list of annotations) names its images by id only, so it is
refused with a 400 that says how to wrap it.

Images are matched by file name, never turned into a path: the project's image whose path
relative to the folder equals the file's `file_name`, else the one image with the same base
name. Per annotation, and reported without stopping the others: an image the folder lacks
(or has twice), a size other than the image's (the file's width/height or the RLE's size),
a malformed RLE or polygon, an empty mask, an unknown category, `iscrowd` 1 (a crowd region
is not one object: not imported), a label or score that cannot be stored. COCO categories
join the project's label set (`Progress.add_labels`: names it has are reused, new ones
appended with a colour of their own) once an annotation of the file matches an image;
SA-1B's labels likewise. Imported annotations have source "imported".

Nothing is half-written: the document is parsed and every annotation checked before anything
is stored (a malformed document is a ValueError: 400), then each image's file is rewritten
atomically (`Project.import_annotations`). An annotation whose mask equals one its image
has already is skipped as a duplicate, so importing the same file again adds nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..io import annotation_to_mask, as_int, check_rle, require_keys
from ..rle import decode_coco_rle, encode_coco_rle
from .labelset import Progress
from .project import IMPORTED, ImageEntry, Project, check_label

MAX_POINTS = 256  # point_coords kept per annotation, as the API's annotations take


@dataclass(frozen=True)
class ImageRef:
    """An image as the document names it."""

    file_name: str
    id: int | None  # COCO's image "id" (SA-1B's "image_id" when it has one)
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Document:
    """A parsed import: its images by id (SA-1B: its one image under 0), raw annotations."""

    format: str  # "coco" or "sa1b"
    images: dict[int, ImageRef]
    annotations: list[Any]
    categories: dict[int, str] = field(default_factory=dict)  # COCO ids -> names, file order


@dataclass(frozen=True)
class Problem:
    """An annotation of the document that was not imported, and why."""

    file_name: str | None  # its image's file name in the document
    image_id: int | None  # its image's id in the document (or the one it names, if any)
    annotation: int  # its index in the document's "annotations"
    id: int | str | None  # its "id" in the document
    reason: str


@dataclass
class ImportReport:
    format: str
    imported: int = 0
    duplicates: int = 0  # masks the image had already: skipped
    images: int = 0  # images with at least one annotation imported
    problems: list[Problem] = field(default_factory=list)
    labels_added: list[str] = field(default_factory=list)
    labels_left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "images": self.images,
            "problems": [vars(p) for p in self.problems],
            "labels_added": self.labels_added,
            "labels_left_out": [{"name": n, "reason": r} for n, r in self.labels_left_out],
        }

    def lines(self, name: str) -> list[str]:
        """The report as text, one line a finding (`samkit serve --import`)."""
        out = [
            f"imported {name} ({self.format}): {self.imported} annotation(s) on {self.images} "
            f"image(s), {self.duplicates} duplicate(s) skipped, {len(self.problems)} not "
            "imported"
        ]
        out += [f"  {_which(p)}: {p.reason}" for p in self.problems]
        if self.labels_added:
            out.append(f"  labels added to the set: {', '.join(self.labels_added)}")
        out += [f"  label {n!r} not added to the set: {r}" for n, r in self.labels_left_out]
        return out


def import_router(project: Project, progress: Progress) -> APIRouter:
    """The router of `POST /api/import` for `project` and its label set."""
    router = APIRouter()
    body_schema = {"type": "object", "description": "a COCO instances or SA-1B image JSON"}

    @router.post(
        "/api/import",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def import_annotations(request: Request) -> dict[str, Any]:
        """Import a COCO instances JSON or an SA-1B image JSON (the body): images matched by
        file name, masks the images have already skipped; the answer counts what was
        imported and lists each annotation that was not, with the reason."""
        data = await request.body()

        def run() -> dict[str, Any]:
            return import_document(project, progress, parse_document(data)).to_dict()

        return await run_in_threadpool(run)

    return router


def parse_document(data: bytes | str, name: str = "the request body") -> Document:
    """Parse and check the structure of a COCO or SA-1B document (its annotations are
    checked one by one on import); raises ValueError naming `name` and what is wrong."""
    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise ValueError(
            f"{name} is not valid JSON ({err}): send a COCO instances file or an SA-1B file"
        ) from None
    if isinstance(doc, list):
        raise ValueError(
            f"{name} is a JSON list, as COCO results are: they name images by id only, so "
            'they cannot be matched to files; send {"images": [{"id", "file_name"}, ...], '
            '"annotations": <the list>, "categories": [...]} instead'
        )
    if isinstance(doc, dict) and "images" in doc:
        return _coco(doc, name)
    if isinstance(doc, dict) and "image" in doc:
        return _sa1b(doc, name)
    got = f"its keys are {sorted(doc)[:8]}" if isinstance(doc, dict) else f"it is {data[:40]!r}"
    raise ValueError(
        f"{name} is neither COCO instances (an 'images' list) nor SA-1B (an 'image' object): {got}"
    )


def import_document(project: Project, progress: Progress, doc: Document) -> ImportReport:
    """Check every annotation of `doc` against `project`'s images, then store those that
    pass (source "imported") and add their labels to the set; see the module's docstring."""
    report = ImportReport(doc.format)
    entries = project.images()
    by_path = {e.file_name: e for e in entries}
    by_base: dict[str, list[ImageEntry]] = {}
    for e in entries:
        by_base.setdefault(_base(e.file_name), []).append(e)
    batches: dict[str, list[dict[str, Any]]] = {}
    labels: list[str] = []
    matched = False
    for index, ann in enumerate(doc.annotations):
        image: ImageRef | None = None
        try:
            image = _image_of(doc, ann)
            entry = _match(image, by_path, by_base)
            matched = True
            fields = _fields(doc, ann, image, project.size(entry.id))
        except ValueError as err:
            file_name, image_id = (
                (None, _ann_image_id(ann)) if image is None else (image.file_name, image.id)
            )
            report.problems.append(Problem(file_name, image_id, index, _ann_id(ann), str(err)))
            continue
        batches.setdefault(entry.id, []).append(fields)
        labels.append(fields["label"])
    stored = project.import_annotations(batches)
    for flags in stored.values():
        report.imported += sum(flags)
        report.duplicates += len(flags) - sum(flags)
        report.images += any(flags)
    if matched:  # a file of another dataset leaves the set alone
        names = list(doc.categories.values()) if doc.format == "coco" else labels
        report.labels_added, report.labels_left_out = progress.add_labels(dict.fromkeys(names))
    return report


# -- the two formats -------------------------------------------------------------------------
def _coco(doc: dict[str, Any], name: str) -> Document:
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise ValueError(f"{name}: {key!r} must be a list; got {type(doc[key]).__name__}")
    if "annotations" not in doc:
        raise ValueError(f"{name}: a COCO file needs an 'annotations' list")
    images: dict[int, ImageRef] = {}
    for i, img in enumerate(doc["images"]):
        where = f"{name}: images[{i}]"
        ref = _image(img, where, "id")
        image_id = as_int(img["id"], f"{where} 'id'")  # there: COCO's images need one
        if image_id in images:
            raise ValueError(f"{where}: image id {image_id} is there twice")
        images[image_id] = ref
    categories: dict[int, str] = {}
    for i, cat in enumerate(doc.get("categories", [])):
        where = f"{name}: categories[{i}]"
        require_keys(cat, ("id", "name"), where)
        cat_id = as_int(cat["id"], f"{where} 'id'")
        if cat_id in categories or not isinstance(cat["name"], str):
            raise ValueError(f"{where}: ids must be unique and names strings; got {cat!r}")
        categories[cat_id] = cat["name"]
    return Document("coco", images, doc["annotations"], categories)


def _sa1b(doc: dict[str, Any], name: str) -> Document:
    image = _image(doc["image"], f"{name}: 'image'", "image_id")
    if not isinstance(doc.get("annotations"), list):
        raise ValueError(f"{name}: an SA-1B file needs an 'annotations' list")
    return Document("sa1b", {0: image}, doc["annotations"])


def _image(img: Any, where: str, id_key: str) -> ImageRef:
    """The image entry `img`; `id_key` names its id, which COCO requires ("id")."""
    require_keys(img, ("file_name", "id") if id_key == "id" else ("file_name",), where)
    name = img["file_name"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'file_name' must be a non-empty string; got {name!r}")
    image_id = as_int(img[id_key], f"{where} {id_key!r}") if id_key in img else None
    size = [as_int(img[k], f"{where} {k!r}") if k in img else None for k in ("width", "height")]
    return ImageRef(name, image_id, *size)


def _image_of(doc: Document, ann: Any) -> ImageRef:
    """The document's image of annotation `ann`; ValueError when there is none."""
    if doc.format == "sa1b":
        return doc.images[0]
    if not isinstance(ann, Mapping) or "image_id" not in ann:
        raise ValueError("the annotation has no 'image_id'")
    image_id = ann["image_id"]
    image = doc.images.get(image_id) if isinstance(image_id, int) else None
    if image is None:
        raise ValueError(f"image_id {image_id!r} is not in the file's 'images'")
    return image


def _match(
    image: ImageRef, by_path: dict[str, ImageEntry], by_base: dict[str, list[ImageEntry]]
) -> ImageEntry:
    """The project's image named `image.file_name` (its relative path, else its base name);
    ValueError when there is none, or more than one."""
    if image.file_name in by_path:
        return by_path[image.file_name]
    same = by_base.get(_base(image.file_name), [])
    if not same:
        raise ValueError(f"unknown image: the folder has no image named {_base(image.file_name)!r}")
    if len(same) > 1:
        names = ", ".join(e.file_name for e in same[:5])
        raise ValueError(
            f"ambiguous image: {len(same)} images of the folder are named so ({names})"
        )
    return same[0]


# -- one annotation ------------------------------------------------------------------------
def _fields(doc: Document, ann: Any, image: ImageRef, size: tuple[int, int]) -> dict[str, Any]:
    """The fields `Project.import_annotations` takes for annotation `ann` of `image`, which
    is `size` (W, H) in the folder; raises ValueError saying why it cannot be imported."""
    if not isinstance(ann, Mapping):
        raise ValueError(f"an annotation must be a JSON object; got {type(ann).__name__}")
    if ann.get("iscrowd"):
        raise ValueError("iscrowd 1: a crowd region, not one object; annotate its objects instead")
    width, height = size
    if (image.width or width, image.height or height) != (width, height):
        raise ValueError(
            f"size mismatch: the file's image is {image.width}x{image.height} (WxH) but the "
            f"folder's is {width}x{height}"
        )
    mask = _mask(ann, height, width)
    label = check_label(_label(doc, ann))
    fields: dict[str, Any] = {
        "label": label,
        "segmentation": encode_coco_rle(mask),
        "source": IMPORTED,
    }
    for key in ("predicted_iou", "stability_score"):
        if ann.get(key) is not None:
            if not _is_number(ann[key]):
                raise ValueError(f"{key} must be a finite number; got {ann[key]!r}")
            fields[key] = float(ann[key])
    points = ann.get("point_coords")
    if points:
        arr = np.asarray(points, dtype=object)
        ok = arr.ndim == 2 and arr.shape[1] == 2 and len(arr) <= MAX_POINTS
        if not ok or not all(_is_number(v) for v in arr.reshape(-1)):
            raise ValueError(f"point_coords must be [[x, y], ...], finite, at most {MAX_POINTS}")
        fields["point_coords"] = [[float(x), float(y)] for x, y in arr]
    return fields


def _mask(ann: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    seg = ann.get("segmentation")
    if seg is None:
        raise ValueError("the annotation has no segmentation")
    if isinstance(seg, Mapping):
        try:
            h, w = check_rle(seg, "segmentation")
        except ValueError as err:
            raise ValueError(f"malformed RLE: {err}") from None
        if (h, w) != (height, width):
            raise ValueError(
                f"size mismatch: the mask is {w}x{h} (WxH) but the image is {width}x{height}"
            )
        try:
            mask = decode_coco_rle(seg)
        except ValueError as err:
            raise ValueError(f"malformed RLE: {err}") from None
    elif isinstance(seg, list):
        try:
            mask = annotation_to_mask(
                {"id": ann.get("id", "?"), "segmentation": seg}, height, width
            )
        except ValueError as err:
            raise ValueError(f"malformed polygon: {err}") from None
    else:
        raise ValueError(f"segmentation must be an RLE or polygons; got {type(seg).__name__}")
    if not mask.any():
        raise ValueError("empty mask: no pixel of the image is inside it")
    return mask


def _label(doc: Document, ann: Mapping[str, Any]) -> Any:
    if doc.format == "sa1b":
        return ann.get("label", "object")
    cat = ann.get("category_id")
    if not isinstance(cat, int) or cat not in doc.categories:
        raise ValueError(f"category_id {cat!r} is not in the file's 'categories'")
    return doc.categories[cat]


# -- small helpers ----------------------------------------------------------------------------
def _base(file_name: str) -> str:
    return re.split(r"[\\/]", file_name)[-1]


def _ann_id(ann: Any) -> int | str | None:
    value = ann.get("id") if isinstance(ann, Mapping) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _ann_image_id(ann: Any) -> int | None:
    value = ann.get("image_id") if isinstance(ann, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _which(p: Problem) -> str:
    """ "a.png annotation #7", "image 3 annotation [2]" (by index: it has no id), ..."""
    image = p.file_name or (None if p.image_id is None else f"image {p.image_id}")
    ann = f"annotation [{p.annotation}]" if p.id is None else f"annotation #{p.id}"
    return f"{image} {ann}" if image else ann


def _is_number(value: Any) -> bool:
    """A finite JSON number (JSON parsers read 1e999 as infinity)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")

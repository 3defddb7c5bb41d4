"""The annotator's project: a folder of images, their opaque ids, uploads and annotations.

Images are the files under the folder with an image suffix (recursively, hidden folders
skipped). An image's id is a hash of its path relative to the folder: opaque to clients,
stable across restarts, and never turned back into a path (ids are looked up in the scan).

Annotations are autosaved per image in `<folder>/.samkit/annotations/<id>.json`, rewritten
atomically after every change, so reopening the folder resumes where it was left:

    {"file_name": "sub/a.jpg", "width": W, "height": H, "next_id": 4,
     "annotations": [{"id": 1, "label": "cat", "segmentation": {"size": [H, W], "counts": str},
                      "area": int, "bbox": [x, y, w, h], "predicted_iou": float,
                      "stability_score": float, "point_coords": [[x, y]],
                      "text": "the phrase the mask was asked with" (only when there was one),
                      "source": "manual" (clicks, box), "text", "proposal" (segment everything)
                                or "imported" (read from a COCO or SA-1B file, importer.py)
                                or "edited" (its mask painted since, brush or eraser)},
                     ...]}
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._atomic import atomic_path
from ..io import DEFAULT_MAX_PIXELS, image_size, load_image, read_json, record_rle, write_json
from ..io.images import IMAGE_SUFFIXES
from ..rle import decode_coco_rle, encode_coco_rle

STATE_DIR = ".samkit"
MAX_LABEL_CHARS = 100
SOURCES = ("manual", "text", "proposal")  # the stage that made an annotation's mask
IMPORTED = "imported"  # the source of annotations read from a COCO or SA-1B file
EDITED = "edited"  # the source of a mask painted by hand (brush, eraser) after it was made
# Upload formats kept as they are; anything else Pillow reads is stored re-encoded as PNG.
_KEEP_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


class NotFound(KeyError):
    """An image or annotation id that the project does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ImageEntry:
    id: str
    path: Path
    file_name: str  # POSIX path relative to the project folder


def image_id(file_name: str) -> str:
    """The opaque id of the image at `file_name` (relative POSIX path)."""
    return hashlib.sha256(file_name.encode("utf-8")).hexdigest()[:16]


class Project:
    def __init__(self, folder: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """Annotate the images in `folder` (created when missing; uploads are stored there)."""
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.folder / STATE_DIR
        self.max_pixels = max_pixels
        self._entries: dict[str, ImageEntry] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._lock = threading.RLock()  # guards the scan and every annotation file

    # -- images -----------------------------------------------------------------------------
    def images(self) -> list[ImageEntry]:
        """Rescan the folder; entries sorted by file name."""
        found: dict[str, ImageEntry] = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                name = rel.as_posix()
                found[image_id(name)] = ImageEntry(image_id(name), path, name)
        with self._lock:
            self._entries = found
        return list(found.values())

    def get(self, image_id: str) -> ImageEntry:
        with self._lock:
            entry = self._entries.get(image_id)
        if entry is None:
            entry = {e.id: e for e in self.images()}.get(image_id)
        if entry is None:
            raise NotFound(f"no image with id {image_id!r}; list them with GET /api/images")
        return entry

    def revision(self, image_id: str) -> str:
        """The id plus the file's modification time and size: it changes when the file does,
        so caches keyed by it (sizes, embeddings) never serve a replaced image."""
        stat = self.get(image_id).path.stat()
        return f"{image_id}-{stat.st_mtime_ns}-{stat.st_size}"

    def size(self, image_id: str) -> tuple[int, int]:
        """(width, height) as `load_image` gives it (EXIF orientation applied)."""
        key = self.revision(image_id)
        with self._lock:
            size = self._sizes.get(key)
        if size is None:
            size = image_size(self.get(image_id).path)
            with self._lock:
                self._sizes[key] = size
        return size

    def load(self, image_id: str) -> np.ndarray:
        """The image as HxWx3 uint8 RGB, through the pixel limit."""
        entry = self.get(image_id)
        return load_image(entry.path, max_pixels=self.max_pixels, name=entry.file_name)

    def add_uploads(
        self, uploads: list[bytes], names: list[str | None] | None = None
    ) -> list[ImageEntry]:
        """Store uploaded image bytes as `<name>-<hash>.<ext>`; all are checked (by
        `load_image`) before any is stored.

        `names` are the client's file names (one per upload, or None): only a safe stem of
        each is kept (`upload_stem`), never a path. The hash is of the bytes, so the stored
        name is unique, and the same file uploaded twice under one name is one image.
        """
        names = [None] * len(uploads) if names is None else names
        if len(names) != len(uploads):
            raise ValueError(f"got {len(names)} names for {len(uploads)} uploads")
        suffixes = []
        for i, data in enumerate(uploads):
            name = "upload" if len(uploads) == 1 else f"upload {i + 1} of {len(uploads)}"
            # Checked, the pixels not kept (200 MP is 600 MB): re-encoding decodes it again.
            load_image(data, max_pixels=self.max_pixels, name=name)
            with Image.open(io.BytesIO(data)) as img:
                suffixes.append(_KEEP_FORMATS.get(str(img.format)))
        entries = []
        for data, suffix, client_name in zip(uploads, suffixes, names, strict=True):
            digest = hashlib.sha256(data).hexdigest()[:16]
            name = f"{upload_stem(client_name)}-{digest}{suffix or '.png'}"
            path = self.folder / name
            if not path.exists():
                with atomic_path(path) as tmp:
                    if suffix is None:
                        rgb = load_image(data, max_pixels=self.max_pixels, name="upload")
                        Image.fromarray(rgb).save(tmp, format="PNG")
                    else:
                        tmp.write_bytes(data)
            entries.append(ImageEntry(image_id(name), path, name))
        with self._lock:
            self._entries.update((entry.id, entry) for entry in entries)
        return entries

    # -- annotations ------------------------------------------------------------------------
    def annotations(self, image_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._read(image_id)["annotations"]

    def add_annotation(self, image_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Check and store one annotation; returns it with its new id.

        fields: `label` (str), `segmentation` (COCO RLE, compressed or not, of the image's
        size), optional `predicted_iou`, `stability_score`, `point_coords` ([[x, y]]),
        `text` (the phrase that prompted the mask) and `source` (`SOURCES` or `IMPORTED`;
        default "text" with a text, else "manual").
        """
        width, height = self.size(image_id)
        record = _annotation(fields, (height, width))
        with self._lock:
            doc = self._read(image_id)
            record = {"id": doc["next_id"], **record}
            doc["next_id"] += 1
            doc["annotations"].append(record)
            self._write(image_id, doc)
        return record

    def annotation(self, image_id: str, ann_id: int) -> dict[str, Any]:
        with self._lock:
            return _find(self._read(image_id), ann_id)

    def update_annotation(
        self,
        image_id: str,
        ann_id: int,
        label: str | None = None,
        *,
        segmentation: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Change an annotation's label, mask or source (at least one of them).

        segmentation: a new mask (COCO RLE of the image's size, as `add_annotation` takes);
        its area and box follow, and its source becomes `source`, by default `EDITED`.
        """
        if label is None and segmentation is None and source is None:
            raise ValueError("give at least one of label, segmentation and source to change")
        changes: dict[str, Any] = {} if label is None else {"label": check_label(label)}
        if segmentation is not None:
            width, height = self.size(image_id)
            changes.update(_mask_fields(segmentation, (height, width)))
            del changes["centre"]  # the prompt's points stay what they were
            source = source or EDITED
        if source is not None:
            changes["source"] = _source({"source": source})
        with self._lock:
            doc = self._read(image_id)
            record = _find(doc, ann_id)
            record.update(changes)
            self._write(image_id, doc)
        return record

    def delete_annotation(self, image_id: str, ann_id: int) -> None:
        with self._lock:
            doc = self._read(image_id)
            doc["annotations"].remove(_find(doc, ann_id))
            self._write(image_id, doc)

    def import_annotations(self, batches: dict[str, list[dict[str, Any]]]) -> dict[str, list[bool]]:
        """Store many images' annotations: `batches` maps image ids to fields as
        `add_annotation` takes them. Every one is checked before any image's file is written
        (a bad one raises ValueError and nothing is stored). An annotation whose mask equals
        one its image has already, or an earlier one's of its batch, is skipped, so storing
        the same batches twice adds nothing. Returns, per image, whether each was stored.
        """
        checked = {}
        for image_id, fields in batches.items():
            width, height = self.size(image_id)
            checked[image_id] = [_annotation(f, (height, width)) for f in fields]
        stored: dict[str, list[bool]] = {}
        with self._lock:
            for image_id, records in checked.items():
                doc = self._read(image_id)
                seen = {_mask_key(a["segmentation"]) for a in doc["annotations"]}
                stored[image_id] = []
                for record in records:
                    key = _mask_key(record["segmentation"])
                    stored[image_id].append(key not in seen)
                    if key not in seen:
                        seen.add(key)
                        doc["annotations"].append({"id": doc["next_id"], **record})
                        doc["next_id"] += 1
                if any(stored[image_id]):
                    self._write(image_id, doc)
        return stored

    def _path(self, image_id: str) -> Path:
        return self.state_dir / "annotations" / f"{image_id}.json"  # ids are hex, from our scan

    def _read(self, image_id: str) -> dict[str, Any]:
        entry = self.get(image_id)
        path = self._path(entry.id)
        if path.exists():
            doc: dict[str, Any] = read_json(path)
            return doc
        width, height = self.size(image_id)
        return {
            "file_name": entry.file_name,
            "width": width,
            "height": height,
            "next_id": 1,
            "annotations": [],
        }

    def _write(self, image_id: str, doc: dict[str, Any]) -> None:
        write_json(self._path(image_id), doc)


def upload_stem(client_name: str | None, max_chars: int = 64) -> str:
    """A safe file-name stem from a client's file name: its last path part without the
    suffix, runs of characters other than ASCII letters, digits, `.`, `_` and `-` made `_`,
    no leading `.` (hidden) or `-`, at most `max_chars`; "upload" when nothing is left."""
    base = re.split(r"[\\/]", client_name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".-_")[:max_chars].rstrip(".")
    return safe or "upload"


def check_label(label: Any) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError("label must be a non-empty string")
    label = label.strip()
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise ValueError(f"label must be at most {MAX_LABEL_CHARS} printable characters")
    return label


def _find(doc: dict[str, Any], ann_id: int) -> dict[str, Any]:
    for record in doc["annotations"]:
        if record["id"] == ann_id:
            return record
    raise NotFound(f"no annotation with id {ann_id} on image {doc['file_name']!r}")


def _mask_fields(segmentation: Any, shape: tuple[int, int]) -> dict[str, Any]:
    """A client's COCO RLE as stored (compressed), with its area, tight XYWH box and the
    mean of its pixels (X, Y) as `centre`."""
    rle = record_rle({"segmentation": segmentation}, "segmentation", shape)
    mask = decode_coco_rle(rle)  # decodes, so a malformed RLE fails here and not at export
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("segmentation is empty; an annotation needs at least one pixel")
    x0, y0 = float(xs.min()), float(ys.min())
    bbox = [x0, y0, float(xs.max()) - x0 + 1, float(ys.max()) - y0 + 1]
    centre = [float(xs.mean()), float(ys.mean())]
    return {"segmentation": rle, "area": int(xs.size), "bbox": bbox, "centre": centre}


def _annotation(fields: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """A stored annotation (compressed RLE, area, tight XYWH box) from the client's fields."""
    mask = _mask_fields(fields.get("segmentation"), shape)
    centre = mask.pop("centre")
    points = fields.get("point_coords") or [centre]
    return {
        "label": check_label(fields.get("label")),
        **mask,
        "predicted_iou": float(fields.get("predicted_iou") or 0.0),
        "stability_score": float(fields.get("stability_score") or 0.0),
        "point_coords": [[float(x), float(y)] for x, y in points],
        **({"text": str(fields["text"])} if fields.get("text") else {}),
        "source": _source(fields),
    }


def source_counts(annotations: list[dict[str, Any]]) -> dict[str, int]:
    """Annotations per source (`SOURCES`, in order; "unknown" counts ones saved before
    sources were recorded)."""
    counts = dict.fromkeys(SOURCES, 0)
    for ann in annotations:
        source = ann.get("source", "unknown")
        counts[source] = counts.get(source, 0) + 1
    return counts


def _mask_key(rle: dict[str, Any]) -> tuple[int, int, str]:
    """The same key for the same mask: its size and canonical compressed counts (an RLE's
    counts may spell one mask in more than one way, e.g. with empty runs)."""
    canonical = encode_coco_rle(decode_coco_rle(rle))
    return (*canonical["size"], canonical["counts"])


def _source(fields: dict[str, Any]) -> str:
    source = fields.get("source") or ("text" if fields.get("text") else "manual")
    if source not in (*SOURCES, IMPORTED, EDITED):
        raise ValueError(
            f"source must be one of {', '.join((*SOURCES, IMPORTED, EDITED))}; got {source!r}"
        )
    return str(source)

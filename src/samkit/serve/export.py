"""Export a project's annotations in the formats `samkit amg` writes, with their labels.

Layouts (under the export folder, `<folder>/.samkit/export/<format>/` from the server):
- coco: `annotations.json`, one category per label: ids 1.. for the project's label set in
  its order (`labels`), then the labels used but not in the set, sorted.
- sa1b: `<image path without suffix>.json` per annotated image (SA-1B has no labels; the
  label is added to each annotation as `label`).
  Both JSON formats give each annotation `samkit_source`: the stage that made it ("manual",
  "text", "proposal"; "unknown" for annotations saved before sources were recorded).
- png:  `<image path without suffix>/` with `{i}.png`, `metadata.csv` and `labels.png`, as
  `samkit amg --format png`; plus `labels.txt`, the label of mask `i` on line `i`.
- yolo: `labels/<image path without suffix>.txt` and `classes.txt` (class `i` on line `i`).
Only images with at least one annotation are exported. The folder is built next to its
target and swapped in, so a reader sees the previous export or the new one, whole.

Nothing is dropped silently: an annotation that cannot be written (its mask no longer fits
its image, which was replaced by one of another size; in YOLO, a mask with no outline of 3
or more vertices) is listed in `ExportSummary.skipped` with the reason, and not counted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.coco import CocoWriter
from ..io.png import write_label_map, write_png_folder
from ..io.sa1b import write_sa1b
from ..io.yolo import write_yolo
from ..runner import output_path
from .project import Project

FORMATS = ("coco", "sa1b", "png", "yolo")
TMP_SUFFIX = ".tmp"  # of the folders an export builds (and replaces) beside its target


@dataclass(frozen=True)
class Skipped:
    """An annotation the export could not write."""

    file_name: str  # its image, relative to the project folder
    annotation: int  # its id
    reason: str


@dataclass(frozen=True)
class ExportSummary:
    format: str
    folder: Path
    images: int  # images with at least one annotation written
    annotations: int  # annotations written
    labels: list[str]
    skipped: list[Skipped]


def export_project(
    project: Project,
    fmt: str,
    out_dir: str | os.PathLike[str],
    *,
    labels: Sequence[str] = (),
) -> ExportSummary:
    """Write every annotated image of `project` in format `fmt` to `out_dir` (replaced).

    labels: the label set, in order: the first category ids (and YOLO classes), used or not.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    items = []
    skipped = []
    for entry in project.images():
        width, height = project.size(entry.id)
        anns = []
        for ann in project.annotations(entry.id):
            size = list(ann["segmentation"]["size"])
            if size == [height, width]:
                anns.append(ann)
            else:
                reason = (
                    f"its mask is {size[0]}x{size[1]} (HxW) but the image is now "
                    f"{height}x{width}: the file was replaced; annotate it again"
                )
                skipped.append(Skipped(entry.file_name, ann["id"], reason))
        if anns:
            items.append((entry.file_name, width, height, anns))
    used = {a["label"] for *_, anns in items for a in anns}
    names = [*labels, *sorted(used - set(labels))]
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TMP_SUFFIX))
    try:
        lost = _write(fmt, tmp, items, names)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lost_ids = {(s.file_name, s.annotation) for s in lost}
    written = [sum((name, a["id"]) not in lost_ids for a in anns) for name, _, _, anns in items]
    return ExportSummary(fmt, out, sum(n > 0 for n in written), sum(written), names, skipped + lost)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the half-built exports (`.<name>.*.tmp`) a killed export left in `folder`;
    returns what was removed. Run before serving, when no export is in progress."""
    stale = sorted(folder.glob(f".*{TMP_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def _write(fmt: str, out: Path, items: list[Any], labels: list[str]) -> list[Skipped]:
    """Write `items` in `fmt` under `out`; returns the annotations that could not be."""
    lost = []
    class_of = {label: i for i, label in enumerate(labels)}
    writer = CocoWriter(categories=[{"id": i + 1, "name": n} for i, n in enumerate(labels)])
    for image_id, (file_name, width, height, anns) in enumerate(items, start=1):
        key = file_name.rsplit(".", 1)[0]
        records = [_record(a, width, height) for a in anns]
        if fmt == "coco":
            writer.add_image(file_name, width, height, records)
            for ann, a in zip(writer.annotations[-len(anns) :], anns, strict=True):
                ann["category_id"] = class_of[a["label"]] + 1
                ann["samkit_source"] = a.get("source", "unknown")
        elif fmt == "sa1b":
            info = {"image_id": image_id, "width": width, "height": height, "file_name": file_name}
            target = output_path(out, fmt, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_sa1b(target, records, image=info, first_id=1)
            _add_labels(target, anns)
        elif fmt == "png":
            target = output_path(out, fmt, key)
            write_png_folder(target, records)
            write_label_map(target / "labels.png", records, height, width)
            (target / "labels.txt").write_text("".join(f"{a['label']}\n" for a in anns))
        else:
            target = out / "labels" / f"{key}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            classes = [class_of[a["label"]] for a in anns]
            for i, reason in write_yolo(target, records, height, width, classes):
                lost.append(Skipped(file_name, anns[i]["id"], reason))
    if fmt == "coco":
        writer.write(out / "annotations.json")
    elif fmt == "yolo":
        (out / "classes.txt").write_text("".join(f"{label}\n" for label in labels))
    return lost


def _record(ann: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A stored annotation as an AMG-style record (the whole image is its crop box)."""
    fields = ("segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords")
    return {**{k: ann[k] for k in fields}, "crop_box": [0, 0, width, height]}


def _add_labels(path: Path, anns: list[dict[str, Any]]) -> None:
    from ..io import read_json, write_json

    doc = read_json(path)
    for written, ann in zip(doc["annotations"], anns, strict=True):
        written["label"] = ann["label"]
        written["samkit_source"] = ann.get("source", "unknown")
    write_json(path, doc)


def _swap_in(new: Path, target: Path) -> None:
    """Put folder `new` at `target`, removing what was there."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{TMP_SUFFIX}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""A project's label set and the state of each image (the annotator's progress).

Both live beside the annotations, rewritten atomically after every change:

    <folder>/.samkit/labels.json    {"labels": [{"name": "cat", "color": "#e6194b"}, ...]}
    <folder>/.samkit/progress.json  {"states": {"<image id>": "done" | "skipped"}}

The set's order is the labels' order everywhere: keys 1-9 on the page choose the first nine,
and COCO export numbers its categories 1.. in it. An image's state is "done" or "skipped"
when marked so, else "in progress" when it has an annotation, else "new".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io import read_json, write_json
from .project import check_label

MAX_LABELS = 99
STATES = ("new", "in progress", "done", "skipped")
MARKS = ("done", "skipped")  # the states stored; the other two follow from the annotations
PALETTE = (
    "#e6194b", "#3cb44b", "#ffc819", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#008080", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075",
)  # fmt: skip
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


def check_labels(labels: Any) -> list[dict[str, str]]:
    """A checked label set from `[{"name": str, "color": "#rrggbb" (optional)}, ...]` or a
    list of names: 1 to MAX_LABELS unique names, each a label `check_label` takes and free of
    "/" and "\\" (names become YOLO class lines and file names elsewhere)."""
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_LABELS:
        raise ValueError(f"labels must be a list of 1 to {MAX_LABELS} labels")
    checked: list[dict[str, str]] = []
    for i, item in enumerate(labels):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or set(entry) - {"name", "color"}:
            raise ValueError(f"label {i + 1}: give a name, or {{name, color}}; got {item!r}")
        name = check_label(entry.get("name"))
        if "/" in name or "\\" in name:
            raise ValueError(f"label {i + 1}: {name!r} may not contain / or \\")
        if name in (c["name"] for c in checked):
            raise ValueError(f"label {i + 1}: {name!r} is in the set twice; names must be unique")
        color = entry.get("color", PALETTE[i % len(PALETTE)])
        if not isinstance(color, str) or not _COLOR.fullmatch(color):
            raise ValueError(f"label {name!r}: color must be #rrggbb; got {color!r}")
        checked.append({"name": name, "color": color.lower()})
    return checked


def extend_labels(
    labels: list[dict[str, str]], names: Iterable[str]
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """The set `labels` with each of `names` it lacks appended, in a palette colour it does
    not use yet (while one is left); returns it and the names left out, each with the reason
    (not a name `check_labels` takes, or the set is full at MAX_LABELS)."""
    out = list(labels)
    left_out = []
    for name in names:
        if name.strip() in (entry["name"] for entry in out):
            continue
        if len(out) >= MAX_LABELS:
            left_out.append((name, f"the label set is full ({MAX_LABELS} labels)"))
            continue
        used = {entry["color"] for entry in out}
        color = next((c for c in PALETTE if c not in used), PALETTE[len(out) % len(PALETTE)])
        try:
            out = check_labels([*out, {"name": name, "color": color}])
        except ValueError as err:
            left_out.append((name, str(err)))
    return out, left_out


def parse_labels(text: str) -> list[dict[str, str]]:
    """The label set of `samkit serve --labels "cat,dog,car"` (names, comma-separated)."""
    return check_labels([name.strip() for name in text.split(",")])


class Progress:
    """The label set and the images' marks of the project whose state folder is `state_dir`."""

    def __init__(self, state_dir: Path):
        self.labels_path = state_dir / "labels.json"
        self.progress_path = state_dir / "progress.json"
        self._lock = threading.Lock()

    def labels(self) -> list[dict[str, str]]:
        if not self.labels_path.exists():
            return []
        labels: list[dict[str, str]] = read_json(self.labels_path)["labels"]
        return labels

    def set_labels(self, labels: Any) -> list[dict[str, str]]:
        checked = check_labels(labels)
        with self._lock:
            self.labels_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.labels_path, {"labels": checked})
        return checked

    def add_labels(self, names: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """Append the names the set lacks (`extend_labels`); returns the names added and
        those left out with the reason."""
        with self._lock:
            before = self.labels()
            labels, left_out = extend_labels(before, names)
            if len(labels) > len(before):
                self.labels_path.parent.mkdir(parents=True, exist_ok=True)
                write_json(self.labels_path, {"labels": labels})
        return [entry["name"] for entry in labels[len(before) :]], left_out

    def marks(self) -> dict[str, str]:
        if not self.progress_path.exists():
            return {}
        marks: dict[str, str] = read_json(self.progress_path)["states"]
        return marks

    def mark(self, image_id: str, state: str) -> None:
        """Mark an image "done" or "skipped"; "new" or "in progress" takes the mark off."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        with self._lock:
            marks = self.marks()
            if state in MARKS:
                marks[image_id] = state
            else:
                marks.pop(image_id, None)
            self.progress_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.progress_path, {"states": marks})


def state_of(mark: str | None, annotations: int) -> str:
    return mark or ("in progress" if annotations else "new")

"""Run the automatic mask generator over many images: inputs, outputs, resume, failures.

One image's output is written whole or not at all (temporary file or folder, then rename), so
a killed run can be started again: images whose output exists are skipped. An image that
cannot be read or processed is recorded in `failures.jsonl` and the run goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .io.images import IMAGE_SUFFIXES

FORMATS = ("sa1b", "coco", "png", "yolo")
LIST_SUFFIXES = {".txt", ".lst"}
PARTS = ".parts"  # per-image SA-1B files from which the COCO file is assembled
OVERLAYS = "overlays"


class Generator(Protocol):
    def generate(self, image: Any) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class InputImage:
    key: str  # output name: path relative to its input folder, without suffix, '/'-separated
    path: Path


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    masks: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.done} done, {self.skipped} skipped (output exists), "
            f"{len(self.failed)} failed; {self.masks} masks; {rate:.2f} images/s"
        )


def collect_inputs(sources: Sequence[str | os.PathLike[str]]) -> list[InputImage]:
    """Expand files, folders (recursively, image suffixes only) and .txt/.lst path lists."""
    found: list[InputImage] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                found.append(InputImage(file.relative_to(path).with_suffix("").as_posix(), file))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            for line in path.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    file = (path.parent / line.strip()).resolve()
                    found.append(InputImage(file.stem, file))
        elif path.is_file():
            found.append(InputImage(path.stem, path))
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    keys: dict[str, Path] = {}
    for item in found:
        if item.key in keys and keys[item.key] != item.path:
            raise ValueError(
                f"two inputs would write the same output {item.key!r}: {keys[item.key]} and "
                f"{item.path}; pass their common parent folder instead"
            )
        keys[item.key] = item.path
    return list({item.key: item for item in found}.values())


def output_path(out_dir: Path, fmt: str, key: str) -> Path:
    """Where one image's complete output lives (a file, or a folder for "png")."""
    if fmt == "sa1b":
        return out_dir / f"{key}.json"
    if fmt == "coco":
        return out_dir / PARTS / f"{key}.json"
    if fmt == "png":
        return out_dir / key
    if fmt == "yolo":
        return out_dir / f"{key}.txt"
    raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")


def run_amg(
    inputs: Sequence[InputImage],
    out_dir: str | os.PathLike[str],
    generator: Generator,
    fmt: str,
    *,
    progress: bool = True,
    overlays: bool = False,
) -> Summary:
    """Generate and write masks for every input not done yet; returns what happened. With
    `overlays`, also a picture of each image's masks, each in its own colour, under
    `out_dir/overlays/` (written before the masks, whose file marks the image done)."""
    from tqdm import tqdm

    from .io import load_image

    out = Path(out_dir)
    output_path(out, fmt, "probe")  # validates fmt before any work
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    summary = Summary()
    start = time.perf_counter()
    bar = tqdm(inputs, unit="img", disable=not progress, dynamic_ncols=True)
    for image_id, item in enumerate(bar, start=1):
        target = output_path(out, fmt, item.key)
        if target.exists():
            summary.skipped += 1
            continue
        try:
            image = load_image(item.path)
            records = generator.generate(image)
            if overlays:
                _write_overlay(out / OVERLAYS / f"{item.key}.png", image, records)
            _write(fmt, target, records, image.shape[0], image.shape[1], item, image_id)
        except Exception as err:  # one bad image must not stop the run
            summary.failed.append((str(item.path), f"{type(err).__name__}: {err}"))
            _append_failure(out, item, err)
            continue
        summary.done += 1
        summary.masks += len(records)
        bar.set_postfix(masks=summary.masks, failed=len(summary.failed))
    if fmt == "coco":
        _assemble_coco(out, inputs)
    summary.seconds = time.perf_counter() - start
    return summary


def _write(
    fmt: str,
    target: Path,
    records: list[dict[str, Any]],
    h: int,
    w: int,
    item: InputImage,
    image_id: int,
) -> None:
    if fmt in ("sa1b", "coco"):
        from .io.sa1b import write_sa1b

        info = {"image_id": image_id, "width": w, "height": h, "file_name": item.path.name}
        target.parent.mkdir(parents=True, exist_ok=True)
        write_sa1b(target, records, image=info)
    elif fmt == "yolo":
        from .io.yolo import write_yolo

        target.parent.mkdir(parents=True, exist_ok=True)
        write_yolo(target, records, h, w)
    else:  # png: fill a temporary folder, then rename it into place
        from .io.png import write_label_map, write_png_folder

        tmp = target.parent / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        write_png_folder(tmp, records)
        write_label_map(tmp / "labels.png", records, h, w)
        os.replace(tmp, target)


def _write_overlay(path: Path, image: Any, records: list[dict[str, Any]]) -> None:
    import numpy as np

    from .io.render import render_masks, save_image
    from .rle import decode_coco_rle

    h, w = image.shape[:2]
    masks = [
        decode_coco_rle(r["segmentation"])
        if isinstance(r["segmentation"], dict)
        else np.asarray(r["segmentation"], dtype=bool)
        for r in records
    ]
    stack = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(render_masks(image, stack), path)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete what a killed run left half-written (hidden `.*.tmp` files and folders)."""
    for stale in sorted(out.rglob(".*.tmp"), reverse=True):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _append_failure(out: Path, item: InputImage, err: Exception) -> None:
    line = json.dumps({"path": str(item.path), "error": f"{type(err).__name__}: {err}"})
    with open(out / "failures.jsonl", "a") as f:
        f.write(line + "\n")


def _assemble_coco(out: Path, inputs: Iterable[InputImage]) -> None:
    """Write annotations.json from the per-image parts of every input that has one."""
    from .io.coco import CocoWriter
    from .io.sa1b import read_sa1b

    writer = CocoWriter()
    for item in inputs:
        part = output_path(out, "coco", item.key)
        if part.exists():
            info, annotations = read_sa1b(part)
            writer.add_image(
                item.key + item.path.suffix, info["width"], info["height"], annotations
            )
    writer.write(out / "annotations.json")

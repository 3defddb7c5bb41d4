"""Run the automatic mask generator over many images: inputs, outputs, resume, failures.

One image's output is written whole or not at all (temporary file or folder, then rename), so
a killed run can be started again: images whose output exists are skipped. An image that
cannot be read or processed is recorded in `failures.jsonl` and the run goes on. A run
interrupted by SIGINT or SIGTERM (see `samkit.interrupt`) discards the image in flight and
raises `Interrupted` saying how many images are done.

Skipping is right only for outputs made the same way, so the settings that decide an output
(the model's weights, the generator's options, the format) are recorded beside them in
`.samkit_settings.json` before any work (`prepare_output`), and a rerun with other settings is
refused unless told to delete the old outputs (`overwrite`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._atomic import atomic_path
from .interrupt import Interrupted, images
from .io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

FORMATS = ("sa1b", "coco", "png", "yolo")
LIST_SUFFIXES = {".txt", ".lst"}
PARTS = ".parts"  # per-image SA-1B files from which the COCO file is assembled
OVERLAYS = "overlays"
FAILURES = "failures.jsonl"
SETTINGS = ".samkit_settings.json"  # the settings that made a folder's outputs
# The generator's arguments that do not change the masks written: speed, and the form in
# which the runners ask for them.
NOT_DECIDING = {"points_per_batch", "output_mode"}
# In SETTINGS for people to read, not compared: the precision and encoder backend move the
# masks by a few pixels, and folders written before they were recorded still resume.
RECORD_ONLY = {"model", "samkit", "precision", "backend"}


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
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Summary:
    """Generate and write masks for every input not done yet; returns what happened. With
    `overlays`, also a picture of each image's masks, each in its own colour, under
    `out_dir/overlays/` (written before the masks, whose file marks the image done). An image
    of more than `max_pixels` pixels fails (`samkit.io.load_image`) and the run goes on."""
    from tqdm import tqdm

    from .io import load_image

    out = Path(out_dir)
    output_path(out, fmt, "probe")  # validates fmt before any work
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    summary = Summary()
    start = time.perf_counter()
    bar = tqdm(inputs, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for image_id, item in enumerate(bar, start=1):
            target = output_path(out, fmt, item.key)
            if target.exists():
                summary.skipped += 1
                continue
            try:
                image = load_image(item.path, max_pixels=max_pixels)
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
    except Interrupted as stop:  # the image in flight left nothing: its writes are atomic
        bar.close()
        done = sum(output_path(out, fmt, item.key).exists() for item in inputs)
        left = len(inputs) - done
        raise Interrupted(stop.signum, f"{images(done)} done, {left} left") from None
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
        try:
            write_png_folder(tmp, records)
            write_label_map(tmp / "labels.png", records, h, w)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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
    with open(out / FAILURES, "a") as f:
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


# -- the settings that made an output folder -------------------------------------------------
class SettingsMismatch(ValueError):
    """An output folder holds outputs made with other settings than this run's."""


def amg_settings(
    model: str,
    amg_options: Mapping[str, Any],
    fmt: str,
    *,
    overlays: bool,
    precision: str = "fp32",
    backend: str = "torch",
) -> dict[str, Any]:
    """What decides the outputs `samkit amg` writes: the model's weights (`model_identity`),
    the generator's options (`generator_settings`), the format and whether overlays are
    drawn. Fails as `load` would for a model that is neither a name nor a file."""
    from .loading import model_identity

    identity = model_identity(model)
    options = generator_settings(amg_options)
    chosen = {"format": fmt, "overlays": overlays, "precision": precision, "backend": backend}
    return {"command": "amg", **identity, **options, **chosen}  # the run's precision wins


def generator_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """SamAutomaticMaskGenerator's arguments as `options` give them, the others at their
    defaults (so an option left out and one given its default compare equal), less those in
    NOT_DECIDING."""
    import inspect

    from .automatic import SamAutomaticMaskGenerator

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    defaults = {n: p.default for n, p in params.items() if p.default is not p.empty}
    return {k: v for k, v in {**defaults, **options}.items() if k not in NOT_DECIDING}


def settings_text(settings: Mapping[str, Any]) -> str:
    """The content of a SETTINGS file: `settings` and the samkit version, as JSON."""
    from . import __version__

    record = {**settings, "samkit": __version__}
    return json.dumps(record, indent=1, sort_keys=True, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    """JSON for what json cannot write: arrays (point_grids) as lists."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def recorded_settings(text: str | None) -> dict[str, Any] | None:
    """The settings in the text of a SETTINGS file (None: no file; {}: unreadable)."""
    if text is None:
        return None
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return values if isinstance(values, dict) else {}


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """'NAME: was X, now Y' for each compared setting that differs; the weights are named by
    the model as given and a short fingerprint."""
    new = json.loads(json.dumps(new, default=_plain))  # as in the file: tuples become lists
    found = []
    for key in sorted((set(old) | set(new)) - RECORD_ONLY, key=lambda k: (k != "weights", k)):
        if old.get(key) == new.get(key):
            continue
        if key == "weights":
            found.append(f"model: was {_weights(old)}, now {_weights(new)}")
        else:
            was, now = (d.get(key, "(not recorded)") for d in (old, new))
            found.append(f"{key}: was {was}, now {now}")
    return found


def _weights(settings: Mapping[str, Any]) -> str:
    fingerprint = str(settings.get("weights", "(not recorded)"))
    if fingerprint.startswith("sha256:"):
        fingerprint = "sha256 " + fingerprint.removeprefix("sha256:")[:12]
    return f"{settings.get('model', '(not recorded)')} ({fingerprint})"


def check_settings(
    where: str,
    recorded: str | None,
    settings: Mapping[str, Any],
    holds_outputs: Callable[[], bool],
) -> None:
    """Refuse to go on in an output folder whose SETTINGS file (its text: `recorded`, None
    when there is none) differs from `settings` while it holds outputs (`holds_outputs()`):
    skipping those outputs would keep results of the old settings. A folder without the file
    (made before samkit recorded settings, or new) is taken as it is."""
    old = recorded_settings(recorded)
    differences = [] if old is None else settings_differences(old, settings)
    if differences and holds_outputs():
        raise SettingsMismatch(
            f"{where} holds outputs made with other settings ({'; '.join(differences)}); "
            "resuming would keep them as they are. Pass --overwrite to delete them and start "
            "again, or choose another --out"
        )


def prepare_output(
    out_dir: str | os.PathLike[str],
    settings: Mapping[str, Any],
    inputs: Sequence[InputImage],
    fmt: str,
    *,
    overwrite: bool = False,
) -> None:
    """Make `out_dir` ready for `run_amg` with `settings` (`amg_settings`), before any work:
    refuse a folder whose outputs were made with other settings (SettingsMismatch, naming
    what differs; see `check_settings`); with `overwrite`, first delete what a run writes for
    `inputs` (their outputs in the folder's recorded format and in `fmt`, their overlays) and
    the folder's failures.jsonl and COCO file. Then record `settings` in OUT/SETTINGS."""
    out = Path(out_dir)
    path = out / SETTINGS
    recorded = path.read_text() if path.is_file() else None
    if not overwrite:
        check_settings(str(out), recorded, settings, lambda: _holds_outputs(out))
    else:
        old_format = (recorded_settings(recorded) or {}).get("format", fmt)
        _delete_outputs(out, inputs, {fmt, old_format} & set(FORMATS))
    with atomic_path(path) as tmp:
        tmp.write_text(settings_text(settings))


def _holds_outputs(out: Path) -> bool:
    mine = {SETTINGS, FAILURES}
    return any(p.is_file() and p.name not in mine for p in out.rglob("*"))


def _delete_outputs(out: Path, inputs: Iterable[InputImage], formats: set[str]) -> None:
    for item in inputs:
        for fmt in formats:
            target = output_path(out, fmt, item.key)
            if fmt == "png" and target.is_dir():
                shutil.rmtree(target)
            elif fmt != "png" and target.is_file():
                target.unlink()
        (out / OVERLAYS / f"{item.key}.png").unlink(missing_ok=True)
    (out / FAILURES).unlink(missing_ok=True)
    if "coco" in formats:
        (out / "annotations.json").unlink(missing_ok=True)

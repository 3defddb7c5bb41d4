"""backend="auto": the runtime that measures fastest for this model's image encoder here.

The first time a model's encoder is asked for with backend "auto" (at a precision, a thread
count, a CPU and runtime versions), samkit times one encoder pass in torch. An encoder faster
than `MIN_SECONDS` stays in torch: another runtime could save a fraction of that an image,
and measuring it takes a graph export.
Otherwise the encoder is exported (`encoder_backends.exported_encoder`, once) and each installed
runtime that runs the precision (OpenVINO: fp32 and bf16; onnxruntime: fp32) is timed too, each
the best of 3 passes after a warm-up; the fastest wins, torch unless another is `MARGIN` times
faster. The decision and the times are kept in samkit's cache folder (`backend_choice.json`),
so later runs read them instead of measuring. Off the CPU, and for int8 models, "auto" is torch.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import devices
from ._atomic import atomic_path
from .encoder_backends import BACKENDS, OnnxEncoder

if TYPE_CHECKING:
    from .modeling import Sam

MIN_SECONDS = 0.5  # a torch pass faster than this (the bundled model: ~0.05 s) stays in torch
MARGIN = 1.1  # another runtime must be this much faster than torch to be chosen
FILE = "backend_choice.json"
SEP = "|"  # between a decision key's fields: weights digest, precision, then `_machine()`'s


def choose_backend(
    model: Sam,
    precision: str,
    *,
    announce: Callable[[str], None] | None = None,
    min_seconds: float = MIN_SECONDS,
) -> str:
    """The backend ("torch", "openvino" or "onnxruntime") that runs `model`'s image encoder
    fastest at `precision` ("fp32" or "bf16"; resolved) on this machine, measured once and
    remembered. `announce` is told, before a measurement, what is about to take time."""
    if model.device.type != "cpu" or precision not in ("fp32", "bf16"):
        return "torch"
    from .embedding_cache import model_digest
    from .weights_cache import cache_dir

    key = SEP.join((model_digest(model.image_encoder)[:32], precision, _machine()))
    path = cache_dir() / FILE
    records = read_choices(path)
    known = records.get(key, {}).get("backend")
    if known in BACKENDS:
        return str(known)
    if announce is not None:
        announce(
            "measuring which runtime runs this model's image encoder fastest here (once; "
            f"remembered in {path})"
        )
    seconds = {"torch": _time(_torch_encoder(model, precision), model)}
    if seconds["torch"] >= min_seconds:
        for backend in candidates(precision):
            seconds[backend] = _time(OnnxEncoder(model, backend, precision), model)
    fastest = min(seconds, key=lambda name: seconds[name])
    choice = fastest if seconds["torch"] >= MARGIN * seconds[fastest] else "torch"
    records[key] = {
        "backend": choice,
        "seconds": {name: round(s, 4) for name, s in seconds.items()},
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache: the choice holds for this run and is measured again next time
    return choice


def candidates(precision: str) -> list[str]:
    """The installed runtimes besides torch that run an encoder of `precision` on the CPU."""
    names = ["openvino"] + (["onnxruntime"] if precision == "fp32" else [])
    return [name for name in names if importlib.util.find_spec(name) is not None]


def read_choices(path: Path) -> dict[str, dict[str, Any]]:
    """The decisions kept in `path`; {} when there is none or it is not a JSON object (a
    damaged file is measured again and replaced)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def describe_choices(path: Path) -> list[str]:
    """One line per decision kept in `path`: its weights, precision and threads, the backend
    chosen and the times measured (for `samkit info`)."""
    lines = []
    for key, record in sorted(read_choices(path).items()):
        digest, precision, threads, *_ = key.split(SEP)
        times = ", ".join(f"{name} {s:.3g} s" for name, s in record.get("seconds", {}).items())
        lines.append(
            f"weights {digest[:12]} {precision}, {threads}: {record.get('backend')} ({times})"
        )
    return lines


def _machine() -> str:
    """What a decision depends on besides the model: threads, CPU and runtime versions."""
    versions = [f"torch {torch.__version__}"]
    for name in ("openvino", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    threads = f"{torch.get_num_threads()} threads"
    bf16 = "native bf16" if devices.cpu_supports_bf16() else "no native bf16"
    return SEP.join([threads, devices.cpu_name(), bf16, *versions])


def _torch_encoder(model: Sam, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), devices.autocast(model.device, precision):
            return model.image_encoder(batch)

    return run


def _time(encoder: Callable[[torch.Tensor], torch.Tensor], model: Sam, repeats: int = 3) -> float:
    """Seconds of one encoder pass on a random input: the best of `repeats` after one pass to
    warm up (the best, so that another process's burst on a shared CPU does not decide)."""
    size = model.image_encoder.img_size
    batch = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    encoder(batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encoder(batch)
        best = min(best, time.perf_counter() - started)
    return best

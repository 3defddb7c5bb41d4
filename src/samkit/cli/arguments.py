"""Argument types and options that several commands share, and the parser that reads
negative coordinates as values."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.folders import SampleSource
from ..devices import MODEL_PRECISIONS
from ..encoder_backends import CHOICES

if TYPE_CHECKING:
    from ..modeling import Sam

MODEL_HELP = (
    "model name or weights file (default samkit_default, bundled: it runs offline; "
    "vit_b/vit_l/vit_h: Meta's weights, downloaded once with `samkit weights get vit_b`; "
    "or a .pth/.safetensors file)"
)

PRECISION_HELP = (
    "how the model computes (default auto: bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX, "
    "else fp32; `samkit info` says which here). fp32: Meta's numbers; int8: the image "
    "encoder's and mask decoder's Linear layers in int8, on the CPU only"
)

DEVICE_HELP = "cpu, cuda, cuda:N or mps (default cpu; `samkit info` lists the devices here)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes "-5,5" (a point left of the image) as a value, not as an
    option: argparse's own test for negative numbers accepts "-5" and "-.5" only. Every
    argument that starts with "-" and a digit is a value, as no samkit option starts with a
    digit. (Subparsers are made of the same class.)"""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._negative_number_matcher = re.compile(r"^-\.?\d")


# -- argument types ------------------------------------------------------------------------
def floats(n: int) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != n or not all(np.isfinite(values)):
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return values

    return parse


xy = floats(2)


def xyxy(text: str) -> list[float]:
    """X0,Y0,X1,Y1 with X0 <= X1 and Y0 <= Y1."""
    values = floats(4)(text)
    if values[2] < values[0] or values[3] < values[1]:
        raise argparse.ArgumentTypeError(
            f"expected X0,Y0,X1,Y1 with X0 <= X1 and Y0 <= Y1 (top-left, then bottom-right); "
            f"got {text!r}"
        )
    return values


def bounded(
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    exclusive: bool = False,
) -> Callable[[str], float]:
    """An argument type: a finite `kind` (int or float) within [low, high] (a bound of None is
    no bound; `exclusive`: within (low, high)). Checked while the arguments are parsed, so a
    value out of range fails before any work starts."""
    what = "a whole number" if kind is int else "a number"
    if low is not None and high is not None:
        between = "strictly between" if exclusive else "from"
        where = f"{what} {between} {low:g} {'and' if exclusive else 'to'} {high:g}"
    elif low is not None:
        where = f"{what} {'>' if exclusive else '>='} {low:g}"
    elif high is not None:
        where = f"{what} {'<' if exclusive else '<='} {high:g}"
    else:
        where = what

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {where}; got {text!r}") from None
        below = low is not None and (value <= low if exclusive else value < low)
        above = high is not None and (value >= high if exclusive else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"expected {where}; got {text!r}")
        return value

    return parse


def existing_dir(text: str) -> str:
    """An argument type: a folder that exists."""
    if not Path(text).is_dir():
        where = "is not a folder" if Path(text).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {where}")
    return text


def out_dir(text: str) -> str:
    """An argument type: a folder that exists or can be created, and can be written in."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    _check_writable(path, text)
    return text


def out_dir_or_uri(text: str) -> str:
    """`out_dir`, or an fsspec URI (s3://bucket/prefix), which is checked when written."""
    return text if "://" in text else out_dir(text)


def out_file(text: str) -> str:
    """An argument type: a file to write, in a folder that exists or can be created, and can be
    written in."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of a file")
    _check_writable(path.parent, text)
    return text


def _check_writable(folder: Path, text: str) -> None:
    """Raise ArgumentTypeError unless `folder`, or its nearest existing parent when it is not
    there yet, is a folder this process can create files in (tried with a nameless temporary
    file, which leaves nothing behind)."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: cannot create files in {existing} ({err.strerror or err})"
        ) from None


def add_model_argument(p: argparse.ArgumentParser, *, precision: bool = True) -> None:
    """--model, and with `precision` --precision (`samkit.load`'s, default auto here)."""
    p.add_argument("--model", default="samkit_default", help=MODEL_HELP)
    if precision:
        p.add_argument("--precision", choices=MODEL_PRECISIONS, default="auto", help=PRECISION_HELP)


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    """--backend: what runs the image encoder (`SamPredictor`'s backend)."""
    p.add_argument(
        "--backend",
        choices=CHOICES,
        default="auto",
        help="what runs the image encoder: torch, or OpenVINO / onnxruntime on the CPU (the "
        "encoder exported to ONNX once, into samkit's cache); default auto: the fastest for "
        "this model here, measured the first time and remembered. Prompts stay in torch",
    )


def resolve_backend(backend: str, model: Sam) -> str:
    """--backend as `SamPredictor` runs it: "auto" becomes the measured choice (a measurement,
    the first time for a model, is announced on stderr)."""
    if backend != "auto":
        return backend
    from ..backend_choice import choose_backend

    def announce(message: str) -> None:
        print(f"note: {message}", file=sys.stderr, flush=True)

    return choose_backend(model, model.precision, announce=announce)


def add_max_pixels_argument(p: argparse.ArgumentParser) -> None:
    from ..io.images import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=bounded(int, 1),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images of more than N pixels, read from the header before decoding "
        f"(default {DEFAULT_MAX_PIXELS:,}; a guard against decompression bombs)",
    )


def add_dataset_arguments(
    p: argparse.ArgumentParser, *, synthetic: bool, several: bool = False
) -> None:
    """--sa1b, or --coco with --images (and --synthetic SEED with `synthetic`), read with
    `dataset`. With `several`, --sa1b, --coco and --images may be repeated, one dataset each,
    read with `datasets`."""
    more = "; repeat it for more datasets" if several else ""
    action = "append" if several else "store"
    src = p.add_mutually_exclusive_group(required=True)
    if synthetic:
        src.add_argument(
            "--synthetic",
            type=bounded(int, 0),
            metavar="SEED",
            help="synthetic scenes of this seed",
        )
    src.add_argument(
        "--sa1b", metavar="DIR", action=action, help=f"SA-1B folder (images + JSON){more}"
    )
    src.add_argument(
        "--coco", metavar="JSON", action=action, help=f"COCO instances file (with --images){more}"
    )
    p.add_argument(
        "--images",
        action=action,
        help="folder of the COCO file's images"
        + ("; once for every --coco, or once per --coco in the same order" if several else ""),
    )


def dataset(args: argparse.Namespace) -> SampleSource:
    """The SA-1B folder or COCO file the arguments name."""
    if args.sa1b:
        from ..data import SA1BFolder

        return SA1BFolder(args.sa1b)
    if not args.images:
        raise ValueError("--coco needs --images, the folder its file_names are relative to")
    from ..data import CocoInstances

    return CocoInstances(args.coco, args.images, skip_empty=True)


def datasets(args: argparse.Namespace) -> list[tuple[str, SampleSource]]:
    """The SA-1B folders or COCO files that repeatable --sa1b / --coco + --images name
    (`add_dataset_arguments(several=True)`), each with a short name: its folder or file name,
    with as many parent folders as tell it from the others. Each is opened (so checked) here,
    and must hold at least one sample."""
    from ..data import CocoInstances, SA1BFolder

    found: list[tuple[str, SampleSource]] = []
    if args.sa1b:
        names = short_names(args.sa1b, "--sa1b")
        found = [(name, SA1BFolder(path)) for name, path in zip(names, args.sa1b, strict=True)]
    else:
        images = args.images or []
        if len(images) == 1:
            images = images * len(args.coco)
        if len(images) != len(args.coco):
            raise ValueError(
                f"--coco needs --images, the folder its file_names are relative to: once for "
                f"every --coco, or once per --coco in the same order; got {len(args.coco)} "
                f"--coco and {len(args.images or [])} --images"
            )
        names = short_names(args.coco, "--coco")
        for name, coco, folder in zip(names, args.coco, images, strict=True):
            found.append((name, CocoInstances(coco, folder, skip_empty=True)))
    for path, (_, source) in zip(args.sa1b or args.coco, found, strict=True):
        if len(source) == 0:
            raise ValueError(f"{path}: no image with annotations to evaluate")
    return found


def short_names(paths: list[str], option: str) -> list[str]:
    """The last part of each path, with as many of its parent folders as make the names
    differ: ["a/val", "b/val"] -> ["a/val", "b/val"], ["x/a", "y/b"] -> ["a", "b"]."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    if len(set(parts)) < len(parts):
        raise ValueError(f"{option}: a dataset was given twice ({', '.join(paths)})")
    depth = 1  # distinct paths differ at the latest once whole
    while len({p[-depth:] for p in parts}) < len(parts):
        depth += 1
    return [str(Path(*p[-depth:])) for p in parts]


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers like 1,3,5; got {text!r}"
        )
    return values


def add_embedding_cache_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--embedding-cache DIR: the image embeddings kept on disk (`samkit.embedding_cache`);
    `what` says what a later run skips."""
    parser.add_argument(
        "--embedding-cache",
        type=out_dir,
        metavar="DIR",
        help=f"keep {what} in DIR (1 GiB at most, least recently used deleted first), so "
        "the image encoder is skipped next time; the masks do not change",
    )


def embedding_cache(args: argparse.Namespace) -> Any:
    """The `EmbeddingCache` of --embedding-cache (disk only), or None."""
    from ..embedding_cache import EmbeddingCache

    return None if args.embedding_cache is None else EmbeddingCache(0, args.embedding_cache)

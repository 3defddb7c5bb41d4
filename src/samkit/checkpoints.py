"""Reading, writing and loading weights files safely, plus the weights registry and cache.

Pickled `.pth` files are read with `torch.load(weights_only=True)`: a file that would run
arbitrary code on load is refused instead. Every failure raises `CheckpointError` naming the
file and what is wrong with it. The registry, cache and download live in `weights_cache` and
are re-exported here.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_path
from .weights_cache import (
    KNOWN_WEIGHTS,
    DownloadError,
    WeightInfo,
    cache_dir,
    cached_path,
    download,
)

__all__ = [
    "KNOWN_WEIGHTS",
    "CheckpointError",
    "DownloadError",
    "WeightInfo",
    "cache_dir",
    "cached_path",
    "convert",
    "download",
    "load_weights",
    "read_metadata",
    "read_state_dict",
    "write_safetensors",
]

StateDict = dict[str, torch.Tensor]
# Training checkpoints often wrap the weights: {"model": {...}, "optimizer": ..., "epoch": 3}.
_WRAPPER_KEYS = ("model", "state_dict")
_SHOWN = 10  # how many keys of each kind an error message lists


class CheckpointError(ValueError):
    """A weights file is missing, unreadable, unsafe, or does not fit the model."""


# -- reading ---------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a weights file into a {name: tensor} dict on the CPU.

    `.safetensors` files (or files with a safetensors header) are read with safetensors;
    anything else with `torch.load(weights_only=True)`. Weights wrapped under "model" or
    "state_dict" are unwrapped.
    """
    file = _existing_file(path)
    loaded = _load_safetensors(file) if _is_safetensors(file) else _load_pickle(file)
    return _as_state_dict(loaded, file)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata in a safetensors header; {} for other formats."""
    from safetensors import safe_open

    file = _existing_file(path)
    if not _is_safetensors(file):
        return {}
    try:
        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{file} is not a valid safetensors file: {e}") from e


def _existing_file(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, after checking it is a non-empty file."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"weights file {file} does not exist (or is not a file)")
    if file.stat().st_size == 0:
        raise CheckpointError(f"weights file {file} is empty (0 bytes); download it again")
    return file


def _is_safetensors(file: Path) -> bool:
    """True for a `.safetensors` name, or content that starts like a safetensors header
    (8-byte little-endian length, then a JSON object)."""
    if file.suffix == ".safetensors":
        return True
    with open(file, "rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little")
    return len(head) == 9 and head[8:9] == b"{" and header_len < file.stat().st_size


def _load_safetensors(file: Path) -> StateDict:
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(
            f"{file} is not a valid safetensors file ({e}); it may be truncated or corrupt, "
            "download or convert it again"
        ) from e


def _load_pickle(file: Path) -> Any:
    """torch.load with weights_only=True, turning its failures into `CheckpointError`."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"{file}: samkit refuses to unpickle {found.group(1)}; weights files may hold only "
                "tensors and plain containers, since unpickling other objects can run "
                "arbitrary code. If you trust the file, load it with torch.load("
                "weights_only=False) yourself and save its state dict with write_safetensors"
            ) from e
        raise CheckpointError(f"{file} is not a readable weights file (bad pickle data)") from e
    except Exception as e:  # corrupt pickle data can fail in any of the unpickler's steps
        raise CheckpointError(
            f"{file} is not a readable weights file ({_first_line(e)}); it may be truncated "
            "or corrupt, download or convert it again"
        ) from e


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _as_state_dict(loaded: Any, file: Path) -> StateDict:
    """Check `loaded` is a {str: Tensor} mapping (unwrapping "model"/"state_dict")."""
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{file} holds a {type(loaded).__name__}, not a dict of tensors (a state dict)"
        )
    for key in _WRAPPER_KEYS:
        if key in loaded and isinstance(loaded[key], Mapping):
            loaded = loaded[key]
            break
    bad = [str(k) for k, v in loaded.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise CheckpointError(
            f"{file} is not a state dict: {len(bad)} entries are not named tensors "
            f"({_listing(bad)})"
        )
    if not loaded:
        raise CheckpointError(f"{file} holds no tensors")
    return dict(loaded)


# -- writing ---------------------------------------------------------------------------------
def write_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write `state_dict` to a safetensors file atomically (a crash leaves the old file).

    Tensors are moved to the CPU and made contiguous; tensors sharing memory are cloned,
    because safetensors refuses to store aliased tensors.
    """
    from safetensors.torch import save_file

    tensors = _independent_tensors(state_dict)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _independent_tensors(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Contiguous CPU tensors, no two of which share storage."""
    seen: set[int] = set()
    out: StateDict = {}
    for name, tensor in state_dict.items():
        if not torch.is_tensor(tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().to("cpu").contiguous()
        storage = t.untyped_storage().data_ptr()
        if storage in seen and t.numel() > 0:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, layout: str | None = None
) -> None:
    """Convert a weights file: `dst` ending in .safetensors gets safetensors (keeping `src`'s
    safetensors metadata), .pth/.pt a plain `torch.save`d state dict. Written atomically.

    layout: None keeps the key names; "samkit" writes the official/samkit names (from any
    layout samkit reads); "hf" writes transformers' `SamModel` names."""
    from .layouts import LAYOUTS, to_hf, to_samkit

    suffix = Path(dst).suffix
    if suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"cannot write {dst}: the name must end in .safetensors, .pth or .pt")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    state_dict = read_state_dict(src)
    if layout is not None:
        state_dict, _ = to_samkit(state_dict)
    if layout == "hf":
        state_dict = to_hf(state_dict)
    if suffix == ".safetensors":
        write_safetensors(state_dict, dst, metadata=read_metadata(src) or None)
        return
    with atomic_path(dst) as tmp:
        torch.save(state_dict, tmp)


# -- loading into a model --------------------------------------------------------------------
def load_weights(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    variant: str | None = None,
) -> None:
    """Copy `state_dict` into `model`, requiring an exact match of names and shapes.

    Entries naming non-persistent buffers (constants such as `pixel_mean`) are ignored.
    On a mismatch nothing is loaded and `CheckpointError` lists the missing, unexpected and
    wrongly shaped entries; `variant` (e.g. "vit_b"), when given, is named in that message.
    """
    expected = model.state_dict()
    constants = {name for name, _ in model.named_buffers() if name not in expected}
    given = {k: v for k, v in state_dict.items() if k not in constants}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        header = _mismatch_header(model, variant, expected, given)
        raise CheckpointError(_mismatch_message(header, missing, unexpected, mismatched))
    model.load_state_dict(given, strict=True)


def _mismatch_header(
    model: torch.nn.Module,
    variant: str | None,
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
) -> str:
    """'the weights do not fit this Sam (vit_b: 93.7M values in 242 tensors; the weights: ...)'.
    The sizes alone usually show whether weights of another variant were passed."""
    name = f"{type(model).__name__} {variant}" if variant else type(model).__name__
    return (
        f"the weights do not fit this {name} (the model: {_size(expected)}; "
        f"the weights: {_size(given)})"
    )


def _size(tensors: Mapping[str, torch.Tensor]) -> str:
    values = sum(t.numel() for t in tensors.values())
    shown = f"{values / 1e6:.1f}M" if values >= 1_000_000 else f"{values:,}"
    return f"{shown} values in {len(tensors)} tensors"


def _mismatch_message(
    header: str, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> str:
    lines = [header + ":"]
    for label, items in (
        ("missing from the weights", missing),
        ("unexpected in the weights", unexpected),
        ("with the wrong shape", mismatched),
    ):
        if items:
            lines.append(f"  {len(items)} {label}: {_listing(items)}")
    lines.append("Use weights made for this model variant, or build the variant they fit.")
    return "\n".join(lines)


def _listing(items: list[str]) -> str:
    """The first few items, comma-separated, with a count of the rest."""
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}, ... ({len(items) - _SHOWN} more)"

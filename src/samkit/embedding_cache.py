"""`EmbeddingCache`: image embeddings kept by content, so an image goes through the heavy image
encoder once.

`SamPredictor(model, cache=...)` and `SamAutomaticMaskGenerator(model, cache=...)` look an
image (and each AMG crop) up before they embed it. The key (`EmbeddingCache.key`) is a sha256
of everything the embedding depends on: the encoder's input (the resized image tensor: dtype,
shape and bytes), the model's weights (`model_digest`), the precision, the device type and the
samkit and torch versions. A hit holds the very tensors a fresh pass would compute, so masks do
not change.

Two layers:
- memory: whole `ImageEmbedding`s (embedding, positional encoding, the decoder's prepared keys
  and projections), the least recently used dropped once `max_bytes` is passed. Bytes count
  every storage an entry keeps, once and whole, the model's own weights left out (as the
  annotator's engine counts them: about 10x the embedding alone).
- disk (`directory`, optional): the embedding alone, one safetensors file per key, named by the
  key's hex digest and written atomically, with the key, a format tag and the sha256 of the
  data in its metadata. The decoder's per-image state is recomputed from it (milliseconds, by
  the same code, so the same values). A file that does not read back whole and matching
  (truncated, altered, another format) is a miss and is replaced. The least recently used files
  (by modification time, renewed on each hit) are deleted once `max_disk_bytes` is passed.
  Several processes may share one folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._atomic import atomic_path

if TYPE_CHECKING:
    from .modeling import Sam
    from .predictor import ImageEmbedding

FORMAT = "samkit-embedding/1"  # the files' layout; a file of another layout is a miss
_KEY = re.compile(r"[0-9a-f]{64}")

# model -> (fingerprint of its tensors when digested, digest); forgotten with the model
_DIGESTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int], ...], str]] = (
    weakref.WeakKeyDictionary()
)


def _as_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of `tensor` (any dtype, any device), for hashing."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data


def _version(tensor: torch.Tensor) -> int:
    """The autograd version counter (bumped by every in-place change); -1 for inference
    tensors, which have none."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return -1


def model_digest(model: nn.Module) -> str:
    """sha256 of `model`'s parameters and buffers: names, dtypes, shapes and bytes.

    Computed once per model (about 1 s per GB of weights) and remembered; computed again when a
    tensor has been replaced or changed in place since (its storage or its version counter
    moved: an optimizer step, `load_state_dict`, `seeded_init_`). A change made through
    `tensor.data` bypasses the version counter and is not noticed.
    """
    named = [*model.named_parameters(), *model.named_buffers()]
    fingerprint = tuple((t.data_ptr(), _version(t)) for _, t in named)
    known = _DIGESTS.get(model)
    if known is not None and known[0] == fingerprint:
        return known[1]
    digest = hashlib.sha256()
    for name, tensor in named:
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(_as_bytes(tensor))
    _DIGESTS[model] = (fingerprint, digest.hexdigest())
    return digest.hexdigest()


def _tensors(value: object) -> Iterator[torch.Tensor]:
    """The tensors in `value`, through dataclass fields, dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _tensors(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def embedding_bytes(embedding: ImageEmbedding, model: nn.Module) -> int:
    """Bytes of memory keeping `embedding` costs: each storage once and whole (a view keeps all
    of its storage), storages of `model`'s own weights (which prepared projections view) left
    out."""
    weights = [*model.parameters(), *model.buffers()]
    seen = {(str(t.device), t.untyped_storage().data_ptr()) for t in weights}
    total = 0
    for tensor in _tensors(embedding):
        storage = tensor.untyped_storage()
        key = (str(storage.device), storage.data_ptr())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


class EmbeddingCache:
    def __init__(
        self,
        max_bytes: int,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_disk_bytes: int = 1 << 30,
    ) -> None:
        """Keep image embeddings: up to `max_bytes` in memory and, when `directory` is given,
        up to `max_disk_bytes` of embeddings there (created if missing).

        About 10 MiB of memory an image for samkit_default and 38 MiB for ViT-B/L/H; on disk
        the embedding alone, 1 MiB (samkit_default) or 4 MiB (ViT) an image.
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0; got {max_bytes}")
        if max_disk_bytes < 0:
            raise ValueError(f"max_disk_bytes must be >= 0; got {max_disk_bytes}")
        self.max_bytes = max_bytes
        self.max_disk_bytes = max_disk_bytes
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            if self.directory.exists() and not self.directory.is_dir():
                raise ValueError(f"embedding cache folder {self.directory} is not a folder")
            self.directory.mkdir(parents=True, exist_ok=True)
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise ValueError(f"embedding cache folder {self.directory} is not writable")
        self._memory: OrderedDict[str, tuple[ImageEmbedding, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(input_image: torch.Tensor, model: Sam, precision: str) -> str:
        """The hex sha256 naming the embedding of `input_image` ((1, 3, h, w), resized, before
        normalisation) by `model` at `precision`."""
        from . import __version__

        digest = hashlib.sha256()
        digest.update(
            f"{FORMAT} samkit {__version__} torch {torch.__version__} {precision} "
            f"{model.device.type} {model_digest(model)} "
            f"{input_image.dtype} {tuple(input_image.shape)}\n".encode()
        )
        digest.update(_as_bytes(input_image))
        return digest.hexdigest()

    def get(
        self, key: str, model: Sam, rebuild: Callable[[torch.Tensor], ImageEmbedding]
    ) -> ImageEmbedding | None:
        """The embedding kept under `key` (made by `key` for `model`), or None.

        A disk hit passes the stored (1, C, He, We) float32 CPU embedding to `rebuild`, which
        returns the whole `ImageEmbedding` (the decoder's per-image state recomputed); that is
        kept in memory too. `model`'s own weights are not counted in the memory it keeps.
        """
        with self._lock:
            item = self._memory.get(_checked(key))
            if item is not None:
                self._memory.move_to_end(key)
                return item[0]
        features = self._read(key)
        if features is None:
            return None
        embedding = rebuild(features)
        self._remember(key, embedding, model)
        return embedding

    def put(self, key: str, embedding: ImageEmbedding, model: Sam) -> None:
        """Keep `embedding` (computed by `model`) under `key`, in memory and on disk."""
        self._remember(_checked(key), embedding, model)
        if self.directory is not None:
            self._write(key, embedding.features)

    def __contains__(self, key: object) -> bool:
        """Whether `key` is in memory (the disk is not looked at)."""
        with self._lock:
            return key in self._memory

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    @property
    def nbytes(self) -> int:
        """Bytes the memory layer holds now (always <= max_bytes)."""
        with self._lock:
            return self._bytes

    def disk_files(self) -> list[Path]:
        """The cache's files in `directory`, least recently used first."""
        if self.directory is None:
            return []
        found = []
        for path in self.directory.glob("*.safetensors"):
            if _KEY.fullmatch(path.stem):
                try:
                    found.append((path.stat().st_mtime_ns, path))
                except FileNotFoundError:  # another process evicted it just now
                    continue
        return [path for _, path in sorted(found)]

    # -- memory ---------------------------------------------------------------------------
    def _remember(self, key: str, embedding: ImageEmbedding, model: Sam) -> None:
        size = embedding_bytes(embedding, model)
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:  # not kept at all; the caller still has it
                return
            self._memory[key] = (embedding, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._memory.popitem(last=False)
                self._bytes -= evicted

    # -- disk -----------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{_checked(key)}.safetensors"

    def _read(self, key: str) -> torch.Tensor | None:
        """The stored embedding, or None when there is none or it does not read back whole
        (then the file is deleted, to be written again)."""
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()  # whole: a file mapped instead could change under us
        except FileNotFoundError:
            return None
        metadata, features = _parse(data)
        if (
            features is None
            or metadata.get("format") != FORMAT
            or metadata.get("key") != key
            or features.dtype != torch.float32
            or features.ndim != 4
            or features.shape[0] != 1
            or metadata.get("sha256") != hashlib.sha256(_as_bytes(features)).hexdigest()
        ):
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # a use: evicted last
        return features

    def _write(self, key: str, features: torch.Tensor) -> None:
        from safetensors.torch import save_file

        data = features.detach().to("cpu", torch.float32).contiguous()
        metadata = {
            "format": FORMAT,
            "key": key,
            "sha256": hashlib.sha256(_as_bytes(data)).hexdigest(),
        }
        with atomic_path(self._path(key)) as tmp:
            save_file({"features": data}, os.fspath(tmp), metadata=metadata)
        self._evict_disk()

    def _evict_disk(self) -> None:
        """Delete the least recently used files until the rest fit in max_disk_bytes."""
        files = []
        for path in self.disk_files():
            try:
                files.append((path, path.stat().st_size))
            except FileNotFoundError:
                continue
        total = sum(size for _, size in files)
        for path, size in files:
            if total <= self.max_disk_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


def _parse(data: bytes) -> tuple[dict[str, str], torch.Tensor | None]:
    """The metadata and the one "features" tensor of safetensors file contents; ({}, None)
    for contents that are not that."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
        tensors = load(data)
    except (SafetensorError, ValueError, AttributeError):  # JSON errors are ValueErrors
        return {}, None
    if set(tensors) != {"features"} or not isinstance(metadata, dict):
        return {}, None
    return metadata, tensors["features"]


def _checked(key: str) -> str:
    """`key` if it is a cache key (64 lowercase hex digits), else ValueError: keys name files,
    so nothing else may become a path."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"an embedding cache key is 64 lowercase hex digits; got {key!r}")
    return key

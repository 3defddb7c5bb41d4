"""Where the engine reads and writes: local paths or any fsspec URI (s3://, gs://, file://...).

Inputs are images named by a local path or a URI; a folder (or URI prefix) is searched
recursively for image suffixes and a `.txt`/`.lst` file lists one path or URI a line. Every
input gets a key (its path relative to the folder it was found in, without suffix) that names
its outputs, and an image_id (its 1-based position among all inputs) as `samkit amg` gives it.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..io.images import IMAGE_SUFFIXES
from ..runner import LIST_SUFFIXES, collect_inputs


@dataclass(frozen=True)
class EngineItem:
    key: str  # output name, '/'-separated, no suffix
    uri: str  # local path or fsspec URI of the image
    image_id: int  # 1-based position among all inputs


def is_uri(text: str) -> bool:
    return "://" in text


def collect_items(sources: list[str]) -> list[EngineItem]:
    """Expand local files/folders/lists (as `samkit amg` does) and URIs into engine items."""
    found: list[tuple[str, str]] = []
    local: list[str] = []
    for source in [*sources, ""]:  # the sentinel flushes the last run of local sources
        if source and not is_uri(source):
            local.append(source)
            continue
        if local:
            found += [(i.key, str(i.path)) for i in collect_inputs(local)]
            local = []
        if source:
            found += _collect_uri(source)
    keys: dict[str, str] = {}
    for key, uri in found:
        if keys.setdefault(key, uri) != uri:
            raise ValueError(
                f"two inputs would write the same output {key!r}: {keys[key]} and {uri}"
            )
    unique = dict(found)
    return [EngineItem(key, uri, i) for i, (key, uri) in enumerate(unique.items(), start=1)]


def _collect_uri(uri: str) -> list[tuple[str, str]]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    protocol = uri.split("://", 1)[0]
    if fs.isdir(root):
        files = sorted(
            p for p in fs.find(root) if posixpath.splitext(p)[1].lower() in IMAGE_SUFFIXES
        )
        return [(_stem(posixpath.relpath(p, root)), f"{protocol}://{p}") for p in files]
    if posixpath.splitext(root)[1].lower() in LIST_SUFFIXES:
        with fs.open(root, "rt") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        base = posixpath.dirname(root)
        named = [
            line if is_uri(line) else f"{protocol}://{posixpath.join(base, line)}" for line in lines
        ]
        return [(_stem(posixpath.basename(u)), u) for u in named]
    if fs.isfile(root):
        return [(_stem(posixpath.basename(root)), uri)]
    raise FileNotFoundError(f"input {uri} does not exist")


def _stem(path: str) -> str:
    return posixpath.splitext(path)[0]


def read_bytes(uri: str) -> bytes:
    if not is_uri(uri):
        return Path(uri).read_bytes()
    import fsspec

    with fsspec.open(uri, "rb") as f:
        data: bytes = f.read()
    return data


class OutputStore:
    """A local folder or an fsspec URI prefix; every write is whole or absent.

    Locally a write goes to a hidden temporary file that is fsynced and renamed into place;
    on a remote filesystem to a hidden temporary object that is then moved (object stores
    make a single upload atomic anyway).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        self.remote = is_uri(text) and not text.startswith("file://")
        self.root = text.removeprefix("file://").rstrip("/") or "/"
        self.fs: Any = None
        if self.remote:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(text)

    def __repr__(self) -> str:
        return f"OutputStore({self.root!r}, remote={self.remote})"

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if self.remote else str(Path(self.root) / rel)

    def exists(self, rel: str) -> bool:
        return (
            bool(self.fs.exists(self.path(rel))) if self.remote else Path(self.path(rel)).exists()
        )

    def existing(self, suffix: str) -> set[str]:
        """Relative paths (without `suffix`) of every file ending in `suffix`: one listing."""
        if self.remote:
            if not self.fs.exists(self.root):
                return set()
            names = [posixpath.relpath(p, self.root) for p in self.fs.find(self.root)]
        else:
            base = Path(self.root)
            names = [p.relative_to(base).as_posix() for p in base.rglob(f"*{suffix}")]
        return {n[: -len(suffix)] for n in names if n.endswith(suffix) and "/." not in "/" + n}

    def read_bytes(self, rel: str) -> bytes:
        if self.remote:
            data: bytes = self.fs.cat_file(self.path(rel))
            return data
        return Path(self.path(rel)).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        if not self.remote:
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            return
        head, name = posixpath.split(target)
        staging = posixpath.join(head, f".{name}.{os.getpid()}.tmp")
        self.fs.pipe_file(staging, data)
        self.fs.mv(staging, target)

    def write_file(self, rel: str, write: Callable[[Path], None]) -> None:
        """Call `write(path)` to fill a local file, then store it at `rel` atomically.
        Locally `write` gets the temporary path next to the target (no copy)."""
        if not self.remote:
            with atomic_path(self.path(rel)) as tmp:
                write(tmp)
            return
        with tempfile.TemporaryDirectory() as folder:
            scratch = Path(folder) / "file"
            write(scratch)
            self.write_bytes(rel, scratch.read_bytes())

    def append_line(self, rel: str, line: str) -> None:
        """Append one line (local: O_APPEND; remote: read, add, rewrite; the driver alone)."""
        if not self.remote:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            with open(self.path(rel), "a", encoding="utf-8") as f:
                f.write(line + "\n")
            return
        old = self.fs.cat_file(self.path(rel)).decode() if self.exists(rel) else ""
        self.write_bytes(rel, (old + line + "\n").encode())

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            if self.remote:
                self.fs.rm_file(self.path(rel))
            else:
                Path(self.path(rel)).unlink()

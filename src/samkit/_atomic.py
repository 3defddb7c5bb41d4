"""Atomic file writes: write next to the target, flush to disk, then rename over it.

A killed process leaves either the old file or the new one, never half of one. The file that
lands has the mode a plain `open()` would give it: a new file 0o666 less the umask (so a
team sharing an output folder, or a web server serving it, can read it), a replaced file its
old mode.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path


def create_sibling(target: Path, suffix: str) -> tuple[int, Path]:
    """Create a new, uniquely named file beside `target` (".NAME.RANDOM" + suffix) and return
    its open write descriptor and path. Its mode is `target`'s when that exists, else what
    `open()` gives a new file: os.open applies the process umask to 0o666 itself."""
    while True:
        path = target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(target.stat().st_mode))
        return fd, path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`.

    The writer gets a path (not a file object) so libraries that only write to paths
    (PIL, safetensors, numpy) can be used. On error the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_sibling(target, ".tmp")
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)  # a writer that recreated the file (safetensors) lost it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

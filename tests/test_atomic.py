"""Atomic writes land whole, and with the mode a plain open() would give the file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from samkit._atomic import atomic_path
from samkit.checkpoints import write_safetensors


@pytest.fixture(params=[0o022, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_0666_less_the_umask(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives, the reference
    target = tmp_path / "out" / "new.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
    assert target.read_text() == "hello"
    assert mode(target) == 0o666 & ~umask == mode(plain)
    assert list(target.parent.iterdir()) == [target]  # no temporary file left


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "shared.json"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and mode(target) == 0o640


def test_samkit_writers_honour_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "weights.safetensors"
    write_safetensors({"w": torch.zeros(2)}, path)
    assert mode(path) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]

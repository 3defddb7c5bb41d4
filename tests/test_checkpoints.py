"""Tests for samkit.checkpoints: safe reading, atomic writing, strict loading (downloads and
the weights registry: test_weights_cache.py)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from samkit.checkpoints import (
    CheckpointError,
    convert,
    load_weights,
    read_metadata,
    read_state_dict,
    write_safetensors,
)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 2, generator=g),
        "a.bias": torch.randn(3, generator=g),
        "half": torch.randn(4, generator=g).half(),
        "ints": torch.arange(5),
    }


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert torch.equal(got[k], want[k]), k


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- reading and writing ---------------------------------------------------------------------
def test_safetensors_round_trip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    write_safetensors(_tensors(), path, metadata={"samkit_variant": "vit_b"})
    _assert_equal(read_state_dict(path), _tensors())
    assert read_metadata(path) == {"samkit_variant": "vit_b"}
    assert _leftovers(tmp_path, {"w.safetensors"}) == []


def test_write_safetensors_handles_shared_and_noncontiguous_tensors(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    sd = {"w": base, "tied": base, "view": base[:2], "t": base.t()}
    path = tmp_path / "w.safetensors"
    write_safetensors(sd, path)
    _assert_equal(read_state_dict(path), {k: v.contiguous() for k, v in sd.items()})


def test_write_safetensors_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    write_safetensors({"x": torch.zeros(2)}, path)
    write_safetensors({"y": torch.ones(3)}, path)
    assert read_state_dict(path).keys() == {"y"}
    assert _leftovers(tmp_path, {"w.safetensors"}) == []


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_pth_round_trip_unwraps_training_checkpoints(tmp_path: Path, wrapper: str | None) -> None:
    path = tmp_path / "w.pth"
    payload = _tensors() if wrapper is None else {wrapper: _tensors(), "epoch": 3}
    torch.save(payload, path)
    _assert_equal(read_state_dict(path), _tensors())
    assert read_metadata(path) == {}


class _Sneaky(collections.OrderedDict[str, torch.Tensor]):
    """A state-dict look-alike whose class would have to be imported to unpickle it."""


def test_pickle_with_arbitrary_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save(_Sneaky(w=torch.zeros(2)), path)
    with pytest.raises(CheckpointError, match=r"refuses to unpickle .*_Sneaky") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def _random_bytes(seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(4096)


def _truncated(path: Path) -> None:
    torch.save(_tensors(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_safetensors(path: Path) -> None:
    write_safetensors(_tensors(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("missing.pth", lambda p: None),
        ("empty.pth", lambda p: p.write_bytes(b"")),
        *(
            (f"random{seed}{suffix}", lambda p, s=seed: p.write_bytes(_random_bytes(s)))
            for seed in range(8)
            for suffix in (".pth", ".safetensors")
        ),
        ("truncated.pth", _truncated),
        ("truncated.safetensors", _truncated_safetensors),
        ("list.pth", lambda p: torch.save([torch.zeros(1)], p)),
        ("mixed.pth", lambda p: torch.save({"w": torch.zeros(1), "step": 3}, p)),
        ("nothing.pth", lambda p: torch.save({}, p)),
    ],
)
def test_bad_files_raise_checkpoint_error_naming_the_file(
    tmp_path: Path, name: str, make: Callable[[Path], object]
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_safetensors_content_is_recognised_under_another_name(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    write_safetensors(_tensors(), path, metadata={"k": "v"})
    _assert_equal(read_state_dict(path), _tensors())
    assert read_metadata(path) == {"k": "v"}


@pytest.mark.parametrize("middle", [".safetensors", ".pt"])
def test_convert_round_trip(tmp_path: Path, middle: str) -> None:
    src = tmp_path / "src.pth"
    torch.save({"model": _tensors()}, src)
    mid, back = tmp_path / f"mid{middle}", tmp_path / "back.pth"
    convert(src, mid)
    convert(mid, back)
    _assert_equal(read_state_dict(back), _tensors())
    assert _leftovers(tmp_path, {"src.pth", mid.name, "back.pth"}) == []


def test_convert_keeps_safetensors_metadata(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    write_safetensors(_tensors(), src, metadata={"samkit_variant": "vit_l"})
    convert(src, dst)
    assert read_metadata(dst) == {"samkit_variant": "vit_l"}


def test_convert_rejects_unknown_suffix_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth or \.pt"):
        convert(tmp_path / "missing.pth", tmp_path / "out.onnx")


# -- loading into a model --------------------------------------------------------------------
class _WithConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.register_buffer("pixel_mean", torch.ones(3), persistent=False)


def test_load_weights_copies_values() -> None:
    model = nn.Sequential(nn.Linear(2, 3))
    sd = {"0.weight": torch.randn(3, 2), "0.bias": torch.randn(3)}
    load_weights(model, sd)
    _assert_equal(dict(model.state_dict()), sd)


def test_load_weights_ignores_non_persistent_buffers() -> None:
    model = _WithConstant()
    sd = {"lin.weight": torch.ones(3, 2), "lin.bias": torch.ones(3)}
    load_weights(model, sd)
    load_weights(model, {**sd, "pixel_mean": torch.zeros(3)})
    assert torch.equal(model.get_buffer("pixel_mean"), torch.ones(3))


def test_load_weights_lists_every_kind_of_mismatch() -> None:
    linear = nn.Linear(2, 3)
    model = nn.Sequential(linear)
    before = linear.weight.detach().clone()
    sd = {"0.weight": torch.zeros(3, 4), "extra.bias": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        load_weights(model, sd)
    text = str(info.value)
    assert "Sequential" in text
    assert "1 missing from the weights: 0.bias" in text
    assert "1 unexpected in the weights: extra.bias" in text
    assert "0.weight: file (3, 4) vs model (3, 2)" in text
    assert torch.equal(linear.weight, before)  # nothing loaded on failure


def test_load_weights_truncates_long_listings() -> None:
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(15)])
    with pytest.raises(CheckpointError, match=r"30 missing .*\(20 more\)"):
        load_weights(model, {"other": torch.zeros(1)})


def test_load_weights_names_the_variant_and_sizes() -> None:
    model = nn.Sequential(nn.Linear(2, 3))
    sd = {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(3), "1.weight": torch.zeros(10**6)}
    with pytest.raises(CheckpointError) as info:
        load_weights(model, sd, variant="vit_b")
    assert str(info.value).startswith(
        "the weights do not fit this Sequential vit_b (the model: 9 values in 2 tensors; "
        "the weights: 1.0M values in 3 tensors):\n  1 unexpected in the weights: 1.weight\n"
    )

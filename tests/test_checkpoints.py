"""Tests for samkit.checkpoints: safe reading, atomic writing, strict loading, download."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import samkit
from samkit.checkpoints import (
    KNOWN_WEIGHTS,
    CheckpointError,
    DownloadError,
    WeightInfo,
    cache_dir,
    cached_path,
    convert,
    download,
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


# -- registry and cache ----------------------------------------------------------------------
def test_known_weights_are_well_formed() -> None:
    official = {"vit_h", "vit_l", "vit_b", "vit_t"}
    assert set(KNOWN_WEIGHTS) == official | {"hf_vit_b", "hf_vit_l", "hf_vit_h"}
    hosts = {
        "vit_t": "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/",  # MobileSAM
    }
    for name in official:
        info = KNOWN_WEIGHTS[name]
        assert info.name == name == info.variant
        assert info.sha256 is not None and len(info.sha256) == 64 and int(info.sha256, 16) >= 0
        assert info.url.endswith("/" + info.filename)
        assert info.url.startswith(
            hosts.get(name, "https://dl.fbaipublicfiles.com/segment_anything/")
        )
    for size, variant in (("base", "vit_b"), ("large", "vit_l"), ("huge", "vit_h")):
        info = KNOWN_WEIGHTS[f"hf_{variant}"]
        assert info.variant == variant and info.sha256 is None  # declared by the hub
        assert info.url == (
            f"https://huggingface.co/facebook/sam-vit-{size}/resolve/main/model.safetensors"
        )


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAMKIT_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "samkit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "samkit"
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "sk"))
    assert cache_dir() == tmp_path / "sk"


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="vit_h, vit_l, vit_b"):
        cached_path("vit_x")
    with pytest.raises(ValueError, match="vit_h, vit_l, vit_b"):
        download("vit_x")


@dataclass
class _Server:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)
    declared: dict[str, str] = field(default_factory=dict)  # file name -> sha256 the hub sends


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """A real HTTP server on 127.0.0.1 serving tmp_path/served; it counts GET requests."""
    root = tmp_path / "served"
    root.mkdir()
    state = _Server(root=root, url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if not self._hub_redirect():
                super().do_GET()

        def do_HEAD(self) -> None:
            state.requests.append("HEAD " + self.path)
            if not self._hub_redirect():
                super().do_HEAD()

        def _hub_redirect(self) -> bool:
            """/resolve/NAME answers as Hugging Face does: a redirect to the file (here
            /NAME) carrying the sha256 in X-Linked-Etag, if `state.declared` has one."""
            if not self.path.startswith("/resolve/"):
                return False
            name = self.path.removeprefix("/resolve/")
            self.send_response(302)
            self.send_header("Location", "/" + name)
            if name in state.declared:
                self.send_header("X-Linked-Etag", f'"{state.declared[name]}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAMKIT_WEIGHTS_MIRROR", state.url)
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 through a proxy
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _served(server: _Server, name: str = "tiny.pth", payload: bytes | None = None) -> WeightInfo:
    data = os.urandom(3000) if payload is None else payload
    (server.root / name).write_bytes(data)
    return WeightInfo(
        name="tiny",
        variant="samkit_tiny",
        url="https://example.invalid/" + name,  # never used: the mirror takes over
        sha256=hashlib.sha256(data).hexdigest(),
        filename=name,
        size=len(data),
    )


def _weights_dir() -> Path:
    return cache_dir() / "weights"


def test_download_fetches_verifies_and_then_uses_the_cache(server: _Server) -> None:
    info = _served(server)
    path = download(info, progress=False)
    assert path == _weights_dir() / "tiny.pth"
    assert path.read_bytes() == (server.root / "tiny.pth").read_bytes()
    assert cached_path(info) == path
    assert download(info, progress=False) == path
    assert server.requests == ["/tiny.pth"]
    assert _leftovers(_weights_dir(), {"tiny.pth"}) == []


def test_download_replaces_a_cached_file_of_the_wrong_size(server: _Server) -> None:
    info = _served(server)
    _weights_dir().mkdir(parents=True)
    (_weights_dir() / "tiny.pth").write_bytes(b"partial")
    assert cached_path(info) is None
    download(info, progress=False)
    assert cached_path(info) is not None


def test_download_hash_mismatch_leaves_nothing(server: _Server) -> None:
    info = _served(server)
    wrong = dataclasses.replace(info, sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"expected 0{64}") as error:
        download(wrong, progress=False)
    assert info.sha256 in str(error.value)
    assert server.url + "tiny.pth" in str(error.value)
    assert _leftovers(_weights_dir(), set()) == []


def test_download_404_says_how_to_get_the_file(server: _Server) -> None:
    info = _served(server)
    (server.root / "tiny.pth").unlink()
    with pytest.raises(DownloadError, match="HTTP 404") as error:
        download(info, progress=False)
    assert str(_weights_dir() / "tiny.pth") in str(error.value)
    assert "SAMKIT_WEIGHTS_MIRROR" in str(error.value)
    assert _leftovers(_weights_dir(), set()) == []


def test_download_connection_refused(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _served(server)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SAMKIT_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match=f"could not fetch http://127.0.0.1:{port}/tiny.pth"):
        download(info, progress=False, timeout=5)
    assert server.requests == []


# -- files whose sha256 the host declares (Hugging Face) ----------------------------------------
def _hub_served(server: _Server, monkeypatch: pytest.MonkeyPatch, payload: bytes) -> WeightInfo:
    """A file the /resolve/ route serves, whose registry entry has no sha256 of its own."""
    info = dataclasses.replace(_served(server, "hub.safetensors", payload), sha256=None, size=None)
    monkeypatch.setenv("SAMKIT_WEIGHTS_MIRROR", server.url + "resolve")
    return info


def test_download_checks_the_sha256_the_hub_declares(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _hub_served(server, monkeypatch, os.urandom(5000))
    data = (server.root / "hub.safetensors").read_bytes()
    server.declared["hub.safetensors"] = hashlib.sha256(data).hexdigest()
    path = download(info, progress=False)
    assert path.read_bytes() == data
    assert server.requests[0] == "HEAD /resolve/hub.safetensors"

    path.unlink()
    server.declared["hub.safetensors"] = "ab" * 32  # the hub says one thing, serves another
    with pytest.raises(DownloadError, match="expected " + "ab" * 32):
        download(info, progress=False)
    assert _leftovers(_weights_dir(), set()) == []


def test_download_refuses_a_file_without_a_declared_sha256(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _hub_served(server, monkeypatch, os.urandom(100))
    with pytest.raises(DownloadError, match="declares no sha256"):
        download(info, progress=False)
    assert server.requests == ["HEAD /resolve/hub.safetensors"]  # nothing was fetched
    assert _leftovers(_weights_dir(), set()) == []


def test_load_by_name_downloads_a_hugging_face_layout_file(
    server: _Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reference = samkit.load("samkit_tiny")
    write_safetensors(reference.state_dict(), tmp_path / "ours.safetensors")
    convert(tmp_path / "ours.safetensors", tmp_path / "hf.safetensors", layout="hf")
    payload = (tmp_path / "hf.safetensors").read_bytes()
    info = dataclasses.replace(_hub_served(server, monkeypatch, payload), name="hf_tiny")
    server.declared["hub.safetensors"] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(KNOWN_WEIGHTS, "hf_tiny", info)
    loaded = samkit.load("hf_tiny").state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in reference.state_dict().items())

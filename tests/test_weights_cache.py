"""Tests for samkit.weights_cache: the registry of known weights, the cache, and verified
downloads from a real HTTP server on 127.0.0.1 (pinned sha256, or the one the host declares)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import samkit
from samkit.checkpoints import (
    KNOWN_WEIGHTS,
    DownloadError,
    WeightInfo,
    cache_dir,
    cached_path,
    convert,
    download,
    write_safetensors,
)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


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

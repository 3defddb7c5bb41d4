"""The annotator over a real socket: uvicorn on 127.0.0.1, concurrent clients, body limits,
the byte-bounded caches, and the `samkit serve` command."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import torch

from samkit import SamAutomaticMaskGenerator
from samkit.modeling import Sam
from samkit.rle import decode_coco_rle
from samkit.serve import background, create_app
from samkit.serve.cache import ByteLRU
from samkit.serve.engine import Engine


def test_concurrent_predictions_on_two_images(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam)
    with background(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        images = client.get("/api/images").json()
        jobs = [
            (im["id"], {"points": [[x, y]], "labels": [1]})
            for im in images
            for x, y in [(5, 5), (30, 40), (60, 20), (69, 89)]
        ]

        def masks(job: tuple[str, dict]) -> list[np.ndarray]:
            r = client.post(f"/api/images/{job[0]}/predict", json=job[1])
            r.raise_for_status()
            return [decode_coco_rle(m["segmentation"]) for m in r.json()["masks"]]

        # Cold caches: both images get embedded while requests on both are in flight.
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(masks, jobs * 3))
        alone = [masks(job) for job in jobs]
    assert len(app.state.engine.embeddings) == 2
    for got, want in zip(together, alone * 3, strict=True):
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_body_limit_over_the_socket(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam, max_body_bytes=1000)
    with background(app) as url:
        with httpx.Client(base_url=url) as client:
            r = client.post("/api/export", content=b"x" * 5000)  # declared length
            assert r.status_code == 413 and "1,000 bytes" in r.json()["detail"]

            def chunks():  # no Content-Length: counted as it arrives
                for _ in range(10):
                    yield b'{"format": "coco"         }' * 20

            r = client.post("/api/export", content=chunks())
            assert r.status_code == 413, r.text
            assert client.post("/api/export", json={"format": "coco"}).status_code == 200
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /api/export HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
            assert b" 4" in sock.recv(100).split(b"\r\n")[0]  # 400 or 413: refused


def test_byte_lru_evicts_by_size() -> None:
    lru: ByteLRU[str, bytes] = ByteLRU(10, len)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.get("a") == b"1234"  # "a" is now the most recently used
    lru.put("c", b"1234")
    assert "b" not in lru and "a" in lru and "c" in lru and lru.nbytes == 8
    lru.put("big", b"x" * 11)  # larger than the whole cache: not kept, nothing evicted
    assert "big" not in lru and len(lru) == 2
    lru.put("a", b"123456")  # replacing updates the size
    assert lru.nbytes == 10
    lru.discard("a")
    assert lru.nbytes == 4 and lru.get("a") is None
    with pytest.raises(ValueError, match="max_bytes"):
        ByteLRU(-1, len)


def test_engine_embeds_each_image_once(tiny_sam: Sam, image: np.ndarray) -> None:
    engine = Engine(tiny_sam, cache_bytes=2 * 64 * 16 * 16 * 4)  # room for two embeddings
    loads: list[str] = []
    lock = threading.Lock()

    def loader(key: str):
        def load() -> np.ndarray:
            with lock:
                loads.append(key)
            return image

        return load

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda k: engine.embed(k, loader(k)), ["x", "y"] * 6))
    assert sorted(loads) == ["x", "y"]
    assert engine.embed("y", loader("y"))[1] is True  # cached, and now the most recent
    engine.embed("z", loader("z"))  # a third evicts the least recently used
    assert len(engine.embeddings) == 2 and "x" not in engine.embeddings
    pred = engine.predict("y", loader("y"), box=np.array([10, 10, 60, 50]))
    assert pred.masks.shape == (3, 120, 160) and pred.masks.dtype == np.bool_
    assert torch.from_numpy(pred.scores).isfinite().all()


def test_everything_reuses_the_cached_embedding(tiny_sam: Sam, image: np.ndarray) -> None:
    engine = Engine(tiny_sam)
    encoded: list[tuple[int, ...]] = []  # input shapes the image encoder ran on
    hook = tiny_sam.image_encoder.register_forward_hook(
        lambda module, args, out: encoded.append(tuple(args[0].shape))
    )
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    try:
        click = {"point_coords": np.array([[60, 50]]), "point_labels": np.array([1])}
        engine.predict("im", lambda: image, **click)
        assert len(encoded) == 1
        records = engine.everything("im", lambda: image, **options)
        assert len(encoded) == 1, "segment-everything encoded the image again"
        engine.everything("other", lambda: image, **options)  # not cached: encoded once
        assert len(encoded) == 2 and "other" in engine.embeddings
        engine.everything("im", lambda: image, crop_n_layers=1, **options)
        assert len(encoded) == 2 + 4  # the whole image is cached; only its 4 crops are new
    finally:
        hook.remove()
    direct = SamAutomaticMaskGenerator(tiny_sam, output_mode="uncompressed_rle", **options)
    assert records == direct.generate(image)  # the same masks as encoding afresh


def test_engine_keeps_no_lock_for_images_it_is_not_embedding(
    tiny_sam: Sam, image: np.ndarray
) -> None:
    engine = Engine(tiny_sam, cache_bytes=64 * 16 * 16 * 4)  # room for one embedding
    for i in range(40):
        engine.embed(f"image{i}", lambda: image)
    assert len(engine.embeddings) == 1
    assert len(engine._locks) == 0  # was 40: one lock per image ever seen

    # While one thread embeds an image, a second waits on its lock; the lock goes with both.
    release = threading.Event()

    def held_load() -> np.ndarray:
        release.wait()
        return image

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(engine.embed, "new", held_load)
        second = pool.submit(engine.embed, "new", held_load)
        for _ in range(60_000):  # poll until both are in: one holds the lock, one waits
            entry = engine._locks.get("new")
            if entry is not None and entry.users == 2:
                break
            release.wait(0.01)
        else:
            pytest.fail("the second request never waited on the first one's lock")
        release.set()
        assert sorted([first.result()[1], second.result()[1]]) == [False, True]
    assert engine._locks == {}


def test_serve_command(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "samkit.cli", "serve"]
    r = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "127.0.0.1" in r.stdout and "--model" in r.stdout
    missing = str(tmp_path / "none.safetensors")
    r = subprocess.run(
        [*run, str(tmp_path), "--model", missing], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and "neither a model name" in r.stderr

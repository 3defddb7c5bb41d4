"""The annotator over a real socket: uvicorn on 127.0.0.1, concurrent clients, body limits,
the byte-bounded caches, and the `samkit serve` command."""

from __future__ import annotations

import gc
import io
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
from PIL import Image

from samkit import SamAutomaticMaskGenerator
from samkit.modeling import Sam
from samkit.rle import decode_coco_rle
from samkit.serve import background, create_app
from samkit.serve.cache import ByteLRU
from samkit.serve.engine import Engine


def test_concurrent_predictions_on_two_images(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam)
    page = {"X-Samkit": "1"}
    with background(app) as url, httpx.Client(base_url=url, timeout=60, headers=page) as client:
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


def test_a_click_is_answered_before_queued_segment_everything(
    image_folder: Path, tiny_sam: Sam
) -> None:
    """45 "segment everything" requests wait on the one running (held here by its lock);
    a predict sent after them is answered first, and they all complete after it."""
    app = create_app(image_folder, tiny_sam)
    engine = app.state.engine
    done: list[str] = []  # completion order
    page = {"X-Samkit": "1"}
    with background(app) as url, httpx.Client(base_url=url, timeout=120, headers=page) as client:
        image = client.get("/api/images").json()[0]["id"]
        client.post(f"/api/images/{image}/embed").raise_for_status()

        def everything(_: int) -> int:
            r = client.post(f"/api/images/{image}/everything", json={"points_per_side": 2})
            done.append("everything")
            return r.status_code

        with ThreadPoolExecutor(45) as pool:
            engine._amg_lock.acquire()  # the first job runs and waits here; the rest queue
            try:
                codes = pool.map(everything, range(45))
                with engine.amg_changed:
                    assert engine.amg_changed.wait_for(lambda: engine.amg_jobs == 45, 120)
                body = {"points": [[30, 40]], "labels": [1]}
                predicted = client.post(f"/api/images/{image}/predict", json=body)
                done.append("predict")
            finally:
                engine._amg_lock.release()
            assert list(codes) == [200] * 45
    assert predicted.status_code == 200, predicted.text
    assert done == ["predict"] + ["everything"] * 45


def test_body_limit_over_the_socket(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam, max_body_bytes=1000)
    with background(app) as url:
        with httpx.Client(base_url=url, headers={"X-Samkit": "1"}) as client:
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


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (annotations and exports included) and its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_other_origins_cannot_write(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    with background(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        image_id = client.get("/api/images").json()[0]["id"]
        ann = {"label": "x", "segmentation": {"size": [120, 160], "counts": [0, 5, 19195]}}
        page = {"X-Samkit": "1", "Origin": url}  # what the annotator page sends
        r = client.post(f"/api/images/{image_id}/annotations", json=ann, headers=page)
        assert r.status_code == 201, r.text
        writes = [
            ("POST", "/api/images", {"files": {"file": ("a.png", png.getvalue())}}),
            ("POST", f"/api/images/{image_id}/embed", {}),
            ("POST", f"/api/images/{image_id}/predict", {"json": {"box": [0, 0, 50, 50]}}),
            ("POST", f"/api/images/{image_id}/everything", {"json": {"points_per_side": 2}}),
            ("POST", f"/api/images/{image_id}/annotations", {"json": ann}),
            ("PATCH", f"/api/images/{image_id}/annotations/1", {"json": {"label": "y"}}),
            ("DELETE", f"/api/images/{image_id}/annotations/1", {}),
            ("POST", "/api/export", {"json": {"format": "coco"}}),
        ]
        before = folder_state(image_folder)
        for headers in (
            {"Origin": "http://evil.example"},  # fetch(..., {mode: "no-cors"}) from a page
            {},  # a form posted from a page whose Origin the browser left out
            {"Origin": "http://evil.example", "X-Samkit": "1"},  # needs a preflight: never granted
            {"Origin": "null", "X-Samkit": "1"},
        ):
            for method, path, body in writes:
                r = client.request(method, path, headers=headers, **body)
                assert r.status_code == 403, (method, path, headers, r.status_code)
                assert "X-Samkit: 1" in r.json()["detail"] or "cross-origin" in r.json()["detail"]
        preflight = {  # what a browser asks before sending the header across origins
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-samkit",
        }
        r = client.options("/api/images", headers=preflight)
        assert r.status_code >= 400 and "access-control-allow-origin" not in r.headers
        # A link or an <img> on any page can send a GET: the zip download writes nothing either.
        assert client.get("/api/export/coco.zip").status_code == 200
        assert folder_state(image_folder) == before
        assert len(app.state.engine.embeddings) == 0
        for method, path, body in writes:  # the page itself may
            r = client.request(method, path, headers=page, **body)
            assert r.status_code < 300, (method, path, r.text)


def test_only_the_servers_own_host_names_are_answered(image_folder: Path, tiny_sam: Sam) -> None:
    evil = ["evil.example", "127.0.0.1.evil.example", "localhost.evil", "annotator.lan"]
    with background(create_app(image_folder, tiny_sam)) as url, httpx.Client() as client:
        port = url.rsplit(":", 1)[1]
        for host in [*evil, f"evil.example:{port}"]:  # a rebound name: the page reads nothing
            for path in ["/", "/api/images", "/static/app.js"]:
                r = client.get(url + path, headers={"Host": host})
                assert r.status_code == 421, (host, path, r.status_code)
                assert "does not answer to the host name" in r.json()["detail"]
                assert "only to 127.0.0.1, localhost, [::1]:" in r.json()["detail"]
            headers = {"Host": host, "X-Samkit": "1", "Origin": f"http://{host}"}
            r = client.post(url + "/api/export", json={"format": "coco"}, headers=headers)
            assert r.status_code == 421
        for host in [
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"LocalHost:{port}",
            f"[::1]:{port}",
        ]:
            assert client.get(url + "/api/images", headers={"Host": host}).status_code == 200

    # Names given to the server (--host, --allow-host) are answered too; any port (a tunnel's).
    app = create_app(image_folder, tiny_sam, allowed_hosts=["annotator.lan", "::1"])
    assert app.state.allowed_hosts == ("127.0.0.1", "localhost", "[::1]", "annotator.lan")
    with background(app) as url, httpx.Client() as client:
        for host in ["annotator.lan:8000", "localhost:9000"]:
            assert client.get(url + "/api/images", headers={"Host": host}).status_code == 200
        assert client.get(url + "/", headers={"Host": "evil.example"}).status_code == 421
        # A write carries the page's own origin, whichever allowed name the page was opened by.
        page = {
            "Host": "annotator.lan:8000",
            "Origin": "http://annotator.lan:8000",
            "X-Samkit": "1",
        }
        r = client.post(url + "/api/export", json={"format": "coco"}, headers=page)
        assert r.status_code == 200
        page["Origin"] = "http://localhost:9000"  # an origin other than the Host
        r = client.post(url + "/api/export", json={"format": "coco"}, headers=page)
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"]


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


def entry_bytes(model: Sam, image: np.ndarray) -> int:
    """What one cached image costs the engine's cache."""
    engine = Engine(model)
    engine.embed("one", lambda: image)
    return engine.embeddings.nbytes


def reachable_tensors(root: object) -> list[torch.Tensor]:
    """Every tensor reachable from `root` through containers and samkit objects (found by the
    garbage collector's references, not by the engine's own walk over dataclass fields)."""
    found: list[torch.Tensor] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, (dict, list, tuple)) or type(obj).__module__.startswith("samkit."):
            stack.extend(gc.get_referents(obj))
    return found


def true_bytes(root: object, model: Sam) -> int:
    """Bytes of the distinct storages of the tensors reachable from `root`, the model's own
    weights (which some prepared projections are views of) left out."""
    weights = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *model.buffers()]}
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in reachable_tensors(root)
    }
    return sum(n for ptr, n in storages.items() if ptr not in weights)


def test_the_cache_counts_every_tensor_an_image_keeps(tiny_sam: Sam, image: np.ndarray) -> None:
    engine = Engine(tiny_sam)
    engine.embed("one", lambda: image)
    kept = engine.embeddings.get("one")
    tensors = reachable_tensors(kept)
    assert len(tensors) > 10  # embedding, positional encoding, prepared keys, projections
    assert engine.embeddings.nbytes == true_bytes(kept, tiny_sam)
    assert engine.embeddings.nbytes > 5 * kept.features.nbytes  # was the features only

    # Many images through a cache with room for three and a half: it stays under its cap.
    cap = 7 * engine.embeddings.nbytes // 2
    engine = Engine(tiny_sam, cache_bytes=cap)
    for i in range(20):
        engine.embed(f"image{i}", lambda: image)
        held = [engine.embeddings.get(f"image{j}") for j in range(i + 1)]
        held = [e for e in held if e is not None]
        assert sum(true_bytes(e, tiny_sam) for e in held) == engine.embeddings.nbytes <= cap
    assert len(engine.embeddings) == 3


def test_engine_embeds_each_image_once(tiny_sam: Sam, image: np.ndarray) -> None:
    engine = Engine(tiny_sam, cache_bytes=2 * entry_bytes(tiny_sam, image))  # room for two
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
    engine = Engine(tiny_sam, cache_bytes=entry_bytes(tiny_sam, image))  # room for one
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
    assert "--allow-host NAME" in r.stdout  # names answered besides the loopback ones
    missing = str(tmp_path / "none.safetensors")
    r = subprocess.run(
        [*run, str(tmp_path), "--model", missing], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and "neither a model name" in r.stderr

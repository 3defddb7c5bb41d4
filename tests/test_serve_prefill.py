"""The annotator's semi-automatic stage over the API: where each stored mask came from (and
its exports), and segment-everything jobs' progress and cancel, over a real socket."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit import load
from samkit.modeling import Sam
from samkit.rle import encode_coco_rle
from samkit.serve import background, create_app

PAGE = {"X-Samkit": "1"}


def test_sources_are_stored_counted_and_exported(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam)
    client = TestClient(app, base_url="http://127.0.0.1", headers=PAGE)
    image_id = next(
        im["id"] for im in client.get("/api/images").json() if im["file_name"] == "a.png"
    )
    url = f"/api/images/{image_id}"
    # Segment everything with every mask kept: its proposals are accepted in bulk.
    loose = {
        "points_per_side": 4,
        "pred_iou_thresh": 0,
        "stability_score_thresh": 0,
        "box_nms_thresh": 1,
    }
    proposals = client.post(f"{url}/everything", json=loose).json()["masks"][:3]
    assert len(proposals) == 3
    for m in proposals:
        fields = ("segmentation", "predicted_iou", "stability_score", "point_coords")
        body = {k: m[k] for k in fields}
        r = client.post(f"{url}/annotations", json={**body, "label": "auto", "source": "proposal"})
        assert r.status_code == 201 and r.json()["source"] == "proposal"
    mask = np.zeros((120, 160), dtype=bool)
    mask[10:30, 20:60] = True
    rle = encode_coco_rle(mask)
    manual = client.post(f"{url}/annotations", json={"label": "box", "segmentation": rle}).json()
    said = {"label": "box", "segmentation": rle, "text": "the box"}
    text = client.post(f"{url}/annotations", json=said).json()
    assert (manual["source"], text["source"]) == ("manual", "text")  # the defaults
    bad = client.post(f"{url}/annotations", json={**said, "source": "magic"})
    assert bad.status_code == 422 and "source" in bad.json()["detail"]

    stored = [a["source"] for a in client.get(f"{url}/annotations").json()]
    assert stored == ["proposal"] * 3 + ["manual", "text"]
    assert client.get(url).json()["sources"] == {"manual": 1, "text": 1, "proposal": 3}

    coco = client.post("/api/export", json={"format": "coco"}).json()
    doc = json.loads((image_folder / coco["folder"] / "annotations.json").read_text())
    assert [a["samkit_source"] for a in doc["annotations"]] == stored
    sa1b = client.post("/api/export", json={"format": "sa1b"}).json()
    written = json.loads((image_folder / sa1b["folder"] / "a.json").read_text())["annotations"]
    assert [a["samkit_source"] for a in written] == stored


@pytest.fixture(scope="module")
def default_sam() -> Sam:
    return load("samkit_default")


def test_cancel_stops_a_job_and_progress_rises(tmp_path: Path, default_sam: Sam) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    app = create_app(tmp_path, default_sam)
    with background(app) as base, httpx.Client(base_url=base, headers=PAGE, timeout=120) as client:
        image_id = client.get("/api/images").json()[0]["id"]
        client.post(f"/api/images/{image_id}/embed")
        # 64x64 points in batches of 64: tens of seconds on a CPU if it ran to the end.
        body = {"points_per_side": 64, "job": "slow-1"}
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.post, f"/api/images/{image_id}/everything", json=body)
            seen = []
            deadline = time.monotonic() + 60
            while len({d for d, _ in seen if d > 0}) < 2 and time.monotonic() < deadline:
                r = client.get("/api/everything/slow-1")
                if r.status_code == 200:
                    seen.append((r.json()["done"], r.json()["total"]))
                time.sleep(0.05)
            done = [d for d, _ in seen]
            assert done == sorted(done) and len({d for d in done if d > 0}) >= 2, seen
            assert {t for _, t in seen} == {64 * 64}
            assert client.delete("/api/everything/slow-1").status_code == 204
            cancelled_at = time.monotonic()
            out = answer.result(timeout=60)
        assert out.status_code == 200, out.text
        assert out.json()["cancelled"] is True and out.json()["masks"] == []
        assert time.monotonic() - cancelled_at < 10  # stopped at the next batch, not the end
        # The job is gone: no progress to read, nothing to cancel, and its id is free again.
        assert client.get("/api/everything/slow-1").status_code == 404
        assert client.delete("/api/everything/slow-1").status_code == 404
        click = {"points": [[20, 20]], "labels": [1]}
        start = time.monotonic()
        assert client.post(f"/api/images/{image_id}/predict", json=click).status_code == 200
        assert time.monotonic() - start < 5  # answered at once: the AMG thread is free
    assert app.state.engine.amg_jobs == 0


def test_job_ids_are_checked(image_folder: Path, tiny_sam: Sam) -> None:
    client = TestClient(
        create_app(image_folder, tiny_sam), base_url="http://127.0.0.1", headers=PAGE
    )
    image_id = client.get("/api/images").json()[0]["id"]
    r = client.post(f"/api/images/{image_id}/everything", json={"points_per_side": 2, "job": "a/b"})
    assert r.status_code == 422 and "job" in r.json()["detail"]
    ok = client.post(f"/api/images/{image_id}/everything", json={"points_per_side": 2, "job": "j"})
    assert ok.json()["cancelled"] is False  # finished: its id may be used again
    again = client.post(
        f"/api/images/{image_id}/everything", json={"points_per_side": 2, "job": "j"}
    )
    assert again.status_code == 200

"""Importing COCO and SA-1B annotations into the annotator (POST /api/import and
`samkit serve --import`): the annotator's own exports come back whole, polygons are
rasterised, bad annotations are reported one by one while the others import, a malformed
document changes nothing, importing again adds nothing, and only the page may import."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from samkit.modeling import Sam
from samkit.rle import decode_coco_rle, encode_coco_rle, mask_to_rle
from samkit.serve import background, create_app

H, W = 120, 160  # a.png; sub/b.jpg is 90x70


def page_client(folder: Path, sam: Sam, **options: Any) -> TestClient:
    app = create_app(folder, sam, model_name="samkit_tiny", **options)
    return TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


def ids(client: TestClient) -> dict[str, str]:
    return {im["file_name"]: im["id"] for im in client.get("/api/images").json()}


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def disc(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)


def fresh_copy(folder: Path, to: Path) -> Path:
    """The folder's images without its .samkit state: a project that has annotated nothing."""
    shutil.copytree(folder, to, ignore=shutil.ignore_patterns(".samkit"))
    return to


def state(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def stored(client: TestClient) -> dict[str, list[tuple[str, str, int, list[float], str]]]:
    """Per image: (label, RLE counts, area, bbox, source) of each annotation."""
    return {
        name: [
            (a["label"], a["segmentation"]["counts"], a["area"], a["bbox"], a["source"])
            for a in client.get(f"/api/images/{image_id}/annotations").json()
        ]
        for name, image_id in ids(client).items()
    }


@pytest.fixture
def annotated(image_folder: Path, tiny_sam: Sam) -> TestClient:
    """image_folder's project with the set cat, dog, bird, unused, and three objects."""
    client = page_client(image_folder, tiny_sam)
    names = [{"name": n} for n in ("cat", "dog", "bird", "unused")]
    assert client.put("/api/labels", json={"labels": names}).status_code == 200
    image = ids(client)
    for image_id, label, mask in [
        (image["a.png"], "cat", box(H, W, 30, 90, 40, 110)),
        (image["a.png"], "dog", disc(H, W, 60, 130, 20)),
        (image["sub/b.jpg"], "bird", box(90, 70, 5, 20, 3, 60)),
    ]:
        body = {"label": label, "segmentation": encode_coco_rle(mask)}
        assert client.post(f"/api/images/{image_id}/annotations", json=body).status_code == 201
    return client


def post(client: TestClient, body: Any) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/import", content=data, headers={"content-type": "application/json"})


def test_coco_export_imports_back_whole(
    annotated: TestClient, image_folder: Path, tiny_sam: Sam, tmp_path: Path
) -> None:
    assert annotated.post("/api/export", json={"format": "coco"}).json()["annotations"] == 3
    coco = (image_folder / ".samkit/export/coco/annotations.json").read_bytes()
    fresh = fresh_copy(image_folder, tmp_path / "fresh")
    client = page_client(fresh, tiny_sam)
    client.put("/api/labels", json={"labels": [{"name": "dog", "color": "#123456"}]})
    out = post(client, coco).json()
    assert out == {
        "format": "coco",
        "imported": 3,
        "duplicates": 0,
        "images": 2,
        "problems": [],
        "labels_added": ["cat", "bird", "unused"],  # dog was there: reused, colour kept
        "labels_left_out": [],
    }
    labels = client.get("/api/labels").json()
    assert [x["name"] for x in labels] == ["dog", "cat", "bird", "unused"]
    assert labels[0]["color"] == "#123456" and len({x["color"] for x in labels}) == 4
    want = {
        name: [(*ann[:4], "imported") for ann in anns] for name, anns in stored(annotated).items()
    }
    assert stored(client) == want  # same masks (RLE equal), labels, areas and boxes
    assert client.get("/api/images").json()[0]["sources"]["imported"] == 2
    # Importing it again adds nothing: every mask is there already.
    before = state(fresh)
    again = post(client, coco).json()
    assert (again["imported"], again["duplicates"], again["labels_added"]) == (0, 3, [])
    assert state(fresh) == before


def test_sa1b_export_imports_back_whole(
    annotated: TestClient, image_folder: Path, tiny_sam: Sam, tmp_path: Path
) -> None:
    annotated.post("/api/export", json={"format": "sa1b"})
    export = image_folder / ".samkit/export/sa1b"
    fresh = fresh_copy(image_folder, tmp_path / "fresh")
    client = page_client(fresh, tiny_sam)
    out = post(client, (export / "a.json").read_bytes()).json()
    assert (out["format"], out["imported"], out["problems"]) == ("sa1b", 2, [])
    assert out["labels_added"] == ["cat", "dog"]
    # As SA-1B ships it: no label ("object"), the image named by its base name alone.
    doc = json.loads((export / "sub/b.json").read_text())
    doc["image"]["file_name"] = "b.jpg"
    for ann in doc["annotations"]:
        del ann["label"]
    out = post(client, doc).json()
    assert (out["imported"], out["labels_added"]) == (1, ["object"])
    want = {name: [(*a[:4], "imported") for a in v] for name, v in stored(annotated).items()}
    want["sub/b.jpg"] = [("object", *want["sub/b.jpg"][0][1:])]
    assert stored(client) == want
    again = post(client, (export / "a.json").read_bytes()).json()
    assert (again["imported"], again["duplicates"]) == (0, 2)


def test_polygons_are_rasterised_and_uncompressed_rles_read(
    image_folder: Path, tiny_sam: Sam
) -> None:
    client = page_client(image_folder, tiny_sam)
    ring = [20.0, 10.0, 60.0, 10.0, 60.0, 50.0, 20.0, 50.0]  # pixel edges: 40 x 40 pixels
    tri = [100.0, 60.0, 140.0, 60.0, 100.0, 100.0]  # a right triangle: 800 px^2
    flat = box(H, W, 70, 100, 5, 30)
    (uncompressed,) = mask_to_rle(torch.from_numpy(flat[None]))  # counts: a list of ints
    doc = {
        "images": [{"id": 3, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "shape"}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 1, "segmentation": [ring]},
            {"id": 2, "image_id": 3, "category_id": 1, "segmentation": [tri, ring]},
            {"id": 3, "image_id": 3, "category_id": 1, "segmentation": uncompressed},
        ],
    }
    out = post(client, doc).json()
    assert (out["imported"], out["problems"]) == (3, [])
    square, union, rle = client.get(f"/api/images/{ids(client)['a.png']}/annotations").json()
    assert square["area"] == 1600 and square["bbox"] == [20.0, 10.0, 40.0, 40.0]
    mask = decode_coco_rle(square["segmentation"])
    assert (mask == box(H, W, 10, 50, 20, 60)).mean() > 0.99
    assert abs(union["area"] - 1600 - 800) <= 0.02 * 2400  # the rings of one annotation unioned
    assert np.array_equal(decode_coco_rle(rle["segmentation"]), flat)


def test_bad_annotations_are_reported_and_the_others_import(
    image_folder: Path, tiny_sam: Sam
) -> None:
    for sub in ("x", "y"):  # two images named c.png: the base name alone is ambiguous
        (image_folder / sub).mkdir()
        shutil.copy(image_folder / "a.png", image_folder / sub / "c.png")
    client = page_client(image_folder, tiny_sam)
    good = encode_coco_rle(box(H, W, 5, 15, 5, 15))
    images = [
        {"id": 1, "file_name": "photos/a.png", "width": W, "height": H},  # matched by a.png
        {"id": 2, "file_name": "b.jpg", "width": 71, "height": 90},  # the folder's is 70 wide
        {"id": 3, "file_name": "zebra.png"},
        {"id": 4, "file_name": "c.png"},
        {"id": 5, "file_name": "y/c.png"},  # a relative path names one
    ]
    anns: list[Any] = [
        {"segmentation": good},  # 0: imported
        {"segmentation": encode_coco_rle(box(60, 80, 0, 5, 0, 5))},  # 1: another size
        {"segmentation": {"size": [H, W], "counts": "!!"}},  # 2: not COCO's alphabet
        {"segmentation": {"size": [H, W], "counts": [5, 5]}},  # 3: runs do not cover it
        {"segmentation": [[1, 2, 3, 4]]},  # 4: a polygon of 2 points
        {"segmentation": good, "iscrowd": 1},  # 5
        {"segmentation": good, "category_id": 9},  # 6: no such category
        {"segmentation": [[500, 500, 600, 500, 600, 600]]},  # 7: outside the image: empty
        {"segmentation": good, "image_id": 2},  # 8: the file's size is not the folder's
        {"segmentation": good, "image_id": 3},  # 9
        {"segmentation": good, "image_id": 4},  # 10
        {"segmentation": good, "image_id": 5},  # 11: imported
        {"segmentation": good, "image_id": 42},  # 12
        {"segmentation": good, "predicted_iou": "high"},  # 13
        {"bbox": [1, 2, 3, 4]},  # 14: no mask
        {
            "segmentation": box(H, W, 20, 30, 20, 30).tolist(),
            "category_id": 2,
        },  # 15: a list of rows
        {"segmentation": good, "category_id": 2},  # 16: a duplicate of 0, another label
    ]
    for i, ann in enumerate(anns):
        ann.setdefault("image_id", 1)
        ann.setdefault("category_id", 1)
        ann["id"] = 100 + i
    del anns[3]["id"]  # reported by its index
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "a/b"}],
    }
    out = post(client, doc).json()
    assert (out["imported"], out["duplicates"], out["images"]) == (2, 1, 2)
    reasons = {p["annotation"]: p["reason"] for p in out["problems"]}
    expected = {
        1: "size mismatch: the mask is 80x60",
        2: "malformed RLE",
        3: "malformed RLE",
        4: "malformed polygon",
        5: "iscrowd 1",
        6: "category_id 9 is not in",
        7: "empty mask",
        8: "size mismatch: the file's image is 71x90",
        9: "unknown image: the folder has no image named 'zebra.png'",
        10: "ambiguous image: 2 images",
        12: "image_id 42 is not in the file's 'images'",
        13: "predicted_iou must be a finite number",
        14: "no segmentation",
        15: "malformed polygon",
    }
    assert set(reasons) == set(expected)
    for index, text in expected.items():
        assert text in reasons[index], (index, reasons[index])
    problem = {p["annotation"]: p for p in out["problems"]}
    assert problem[9] == {**problem[9], "file_name": "zebra.png", "image_id": 3, "id": 109}
    assert problem[3]["id"] is None and problem[12]["image_id"] == 42  # the id it names
    # "a/b" may label an object, not the set (names become file names in exports).
    assert out["labels_added"] == ["cat"]
    assert [x["name"] for x in out["labels_left_out"]] == ["a/b"]
    assert "may not contain" in out["labels_left_out"][0]["reason"]
    image = ids(client)
    (a_ann,) = client.get(f"/api/images/{image['a.png']}/annotations").json()
    assert a_ann["label"] == "cat" and a_ann["segmentation"] == good
    assert len(client.get(f"/api/images/{image['y/c.png']}/annotations").json()) == 1
    assert client.get(f"/api/images/{image['x/c.png']}/annotations").json() == []


def test_a_file_of_another_dataset_leaves_the_label_set_alone(
    image_folder: Path, tiny_sam: Sam
) -> None:
    client = page_client(image_folder, tiny_sam)
    doc = {
        "images": [{"id": 1, "file_name": "elsewhere.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    out = post(client, doc).json()
    assert (out["imported"], len(out["problems"]), out["labels_added"]) == (0, 1, [])
    assert client.get("/api/labels").json() == []


def coco(**parts: Any) -> bytes:
    return json.dumps({"images": [], "annotations": [], **parts}).encode()


@pytest.mark.parametrize(
    "body, why",
    [
        (b"{nope", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b'{"images": [], "annotations": [], "x": NaN}', "NaN is not a number"),
        (b"\xff\xfe\x00", "is not valid JSON"),
        (b"[]", "COCO results"),
        (b'{"annotations": []}', "neither COCO instances"),
        (b"42", "neither COCO instances"),
        (coco(images={}), "'images' must be a list"),
        (b'{"images": []}', "needs an 'annotations' list"),
        (coco(images=[{"id": 1}]), "missing key(s) 'file_name'"),
        (coco(images=[{"id": 1, "file_name": 5}]), "non-empty string"),
        (coco(images=[{"id": 1, "file_name": "a.png", "width": "w"}]), "integer"),
        (coco(images=[{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}]), "twice"),
        (coco(categories=[{"id": 1}]), "'name'"),
        (b'{"image": {"file_name": "a.png"}}', "needs an 'annotations' list"),
        (b'{"image": [], "annotations": []}', "expected a JSON object"),
    ],
)
def test_malformed_documents_are_refused_whole(
    image_folder: Path, tiny_sam: Sam, body: bytes, why: str
) -> None:
    client = page_client(image_folder, tiny_sam)
    mask = encode_coco_rle(box(H, W, 5, 15, 5, 15))
    sa1b = {"image": {"file_name": "a.png"}, "annotations": [{"segmentation": mask}]}
    assert post(client, sa1b).json()["imported"] == 1
    before = state(image_folder)
    # A good annotation beside a malformed part of the document is not imported either.
    text = body.replace(
        b'"annotations": []', b'"annotations": [{"image_id": 1, "segmentation": [[0,0,9,0,9,9]]}]'
    )
    for data in {body, text}:
        r = post(client, data)
        assert r.status_code == 400 and why in r.json()["detail"], (data, r.text)
        assert "the request body" in r.json()["detail"]
    assert state(image_folder) == before


def test_only_the_page_may_import(image_folder: Path, tiny_sam: Sam) -> None:
    app = create_app(image_folder, tiny_sam, max_body_bytes=4096)
    ring = [0, 0, 9, 0, 9, 9, 0, 9]  # pixel edges: 9 x 9 pixels
    sa1b = {"image": {"file_name": "a.png"}, "annotations": [{"segmentation": [ring]}]}
    with background(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        image_id = client.get("/api/images").json()[0]["id"]
        before = state(image_folder)
        for headers, status in [
            ({}, 403),  # a form posted from another page
            ({"Origin": "http://evil.example"}, 403),  # fetch(..., {mode: "no-cors"})
            ({"Origin": "http://evil.example", "X-Samkit": "1"}, 403),
            ({"Host": "evil.example", "X-Samkit": "1"}, 421),  # DNS rebinding
        ]:
            r = client.post("/api/import", json=sa1b, headers=headers)
            assert r.status_code == status, (headers, r.text)
        big = {**sa1b, "padding": "x" * 5000}
        r = client.post("/api/import", json=big, headers={"X-Samkit": "1"})
        assert r.status_code == 413 and "4,096 bytes" in r.json()["detail"]
        assert state(image_folder) == before
        page = {"X-Samkit": "1", "Origin": url}
        assert client.post("/api/import", json=sa1b, headers=page).json()["imported"] == 1
        anns = client.get(f"/api/images/{image_id}/annotations").json()
        assert [(a["area"], a["source"]) for a in anns] == [(81, "imported")]


def test_serve_checks_import_files_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samkit.cli import main

    missing_model = str(tmp_path / "no_such_model.safetensors")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    for path, why in [(tmp_path / "none.json", "no such file"), (bad, "is not valid JSON")]:
        code = main(["serve", str(tmp_path), "--import", str(path), "--model", missing_model])
        err = capsys.readouterr().err
        assert code == 1 and f"--import {path}" in err and why in err, err
        assert "no_such_model" not in err and "Traceback" not in err  # before the model
    assert not (tmp_path / ".samkit").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_imports_before_serving(
    annotated: TestClient,
    image_folder: Path,
    tmp_path: Path,
    wait_until: Callable[[Callable[[], bool], subprocess.Popen[Any], Path], None],
) -> None:
    annotated.post("/api/export", json={"format": "coco"})
    coco = tmp_path / "instances.json"
    shutil.copy(image_folder / ".samkit/export/coco/annotations.json", coco)
    fresh = fresh_copy(image_folder, tmp_path / "fresh")
    log, err = tmp_path / "out.txt", tmp_path / "err.txt"
    argv = [sys.executable, "-m", "samkit.cli", "serve", str(fresh), "--port", str(free_port())]
    argv += ["--labels", "dog", "--import", str(coco), "--import", str(coco)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out, open(err, "w") as errors:
        proc = subprocess.Popen(argv, stdout=out, stderr=errors, env=env)
    try:
        wait_until(lambda: "samkit annotator: http://" in log.read_text(), proc, log)
    finally:
        proc.terminate()
        proc.wait(60)
    lines = log.read_text().splitlines()
    assert lines[0] == (
        f"imported {coco} (coco): 3 annotation(s) on 2 image(s), 0 duplicate(s) skipped, "
        "0 not imported"
    )
    assert lines[1] == "  labels added to the set: cat, bird, unused"  # after --labels dog
    assert lines[2].endswith(
        "0 annotation(s) on 0 image(s), 3 duplicate(s) skipped, 0 not imported"
    )
    assert lines[3].startswith("samkit annotator: http://127.0.0.1:")
    labels = json.loads((fresh / ".samkit/labels.json").read_text())["labels"]
    assert [x["name"] for x in labels] == ["dog", "cat", "bird", "unused"]
    anns = [json.loads(p.read_text()) for p in (fresh / ".samkit/annotations").glob("*.json")]
    assert sorted(a["label"] for doc in anns for a in doc["annotations"]) == ["bird", "cat", "dog"]

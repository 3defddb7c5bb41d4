"""The annotator's HTTP API through the ASGI test client: every endpoint and its bad inputs.

Concurrency and body limits over a real socket are in test_serve_http.py.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from samkit import SamPredictor
from samkit.io import read_coco, read_png_folder, read_sa1b, read_yolo, yolo_masks
from samkit.modeling import Sam
from samkit.rle import decode_coco_rle, encode_coco_rle
from samkit.serve import create_app


@pytest.fixture
def folder(image_folder: Path) -> Path:
    return image_folder


def page_client(app: FastAPI) -> TestClient:
    """A client as the annotator's page is one: by 127.0.0.1, with X-Samkit on every call."""
    return TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


@pytest.fixture
def client(folder: Path, tiny_sam: Sam) -> TestClient:
    return page_client(create_app(folder, tiny_sam, model_name="samkit_tiny"))


def ids(client: TestClient) -> dict[str, str]:
    return {im["file_name"]: im["id"] for im in client.get("/api/images").json()}


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict[str, Any]:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return encode_coco_rle(mask)


def test_info_page_and_openapi(client: TestClient) -> None:
    info = client.get("/api/info").json()
    assert info["model"] == "samkit_tiny" and info["model_input_size"] == 256
    assert info["formats"] == ["coco", "sa1b", "png", "yolo"]
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "api.js", "masks.js", "panels.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/images/{image_id}/predict" in schema["paths"] and "/api/export" in schema["paths"]
    (scheme,) = schema["components"]["securitySchemes"].values()  # a viewer can send the header
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-Samkit"}
    # FastAPI's /docs and /redoc load Swagger/ReDoc from a CDN: blank offline, so they are off.
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path


def test_images_are_listed_with_opaque_ids(client: TestClient) -> None:
    images = client.get("/api/images").json()
    assert [im["file_name"] for im in images] == ["a.png", "sub/b.jpg"]
    assert [(im["width"], im["height"]) for im in images] == [(160, 120), (70, 90)]
    for im in images:
        assert len(im["id"]) == 16 and int(im["id"], 16) >= 0 and "/" not in im["id"]
        assert client.get(f"/api/images/{im['id']}").json() == im
    pixels = client.get(f"/api/images/{images[1]['id']}/image")
    assert pixels.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(pixels.content)).size == (70, 90)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/images/{x}"),
        ("GET", "/api/images/{x}/image"),
        ("POST", "/api/images/{x}/embed"),
        ("GET", "/api/images/{x}/annotations"),
        ("DELETE", "/api/images/{x}/annotations/1"),
    ],
)
@pytest.mark.parametrize("bad", ["0123456789abcdef", "..%2F..%2Fetc%2Fpasswd", "a.png"])
def test_unknown_image_ids_are_404(client: TestClient, method: str, path: str, bad: str) -> None:
    r = client.request(method, path.replace("{x}", bad))
    assert r.status_code == 404, r.text


def test_embed_is_cached(client: TestClient) -> None:
    image_id = ids(client)["a.png"]
    assert client.post(f"/api/images/{image_id}/embed").json()["cached"] is False
    assert client.post(f"/api/images/{image_id}/embed").json()["cached"] is True
    assert client.get(f"/api/images/{image_id}").json()["embedded"] is True


def test_a_replaced_file_is_embedded_again(client: TestClient, folder: Path) -> None:
    image_id = ids(client)["a.png"]
    client.post(f"/api/images/{image_id}/embed")
    Image.fromarray(np.zeros((50, 60, 3), dtype=np.uint8)).save(folder / "a.png")
    assert client.get(f"/api/images/{image_id}").json()["embedded"] is False
    assert client.post(f"/api/images/{image_id}/embed").json()["cached"] is False
    assert client.get(f"/api/images/{image_id}").json()["width"] == 60
    r = client.post(f"/api/images/{image_id}/predict", json={"points": [[59, 49]], "labels": [1]})
    assert decode_coco_rle(r.json()["masks"][0]["segmentation"]).shape == (50, 60)


def test_predict_equals_the_predictor(client: TestClient, tiny_sam: Sam, folder: Path) -> None:
    image_id = ids(client)["a.png"]
    url = f"/api/images/{image_id}/predict"
    first = client.post(url, json={"points": [[80, 60]], "labels": [1]}).json()
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(np.asarray(Image.open(folder / "a.png")))
    masks, scores, low_res = predictor.predict(np.array([[80.0, 60.0]]), np.array([1]))
    assert len(first["masks"]) == 3 and first["best"] == int(np.argmax(scores))
    for got, mask, score in zip(first["masks"], masks, scores, strict=True):
        assert np.array_equal(decode_coco_rle(got["segmentation"]), mask)
        assert got["area"] == int(mask.sum())
        assert got["predicted_iou"] == pytest.approx(float(score), abs=1e-5)
        assert 0.0 <= got["stability_score"] <= 1.0

    # A second click with the first prediction's best mask fed back as the mask prompt.
    body = {
        "points": [[80, 60], [10, 10]],
        "labels": [1, 0],
        "box": [30, 20, 120, 100],
        "mask_input": {"token": first["token"], "index": 2},
        "multimask": False,
    }
    second = client.post(url, json=body).json()
    masks2, _, _ = predictor.predict(
        np.array([[80.0, 60.0], [10.0, 10.0]]),
        np.array([1, 0]),
        box=np.array([30.0, 20.0, 120.0, 100.0]),
        mask_input=low_res[2:3],
        multimask_output=False,
    )
    assert len(second["masks"]) == 1
    assert np.array_equal(decode_coco_rle(second["masks"][0]["segmentation"]), masks2[0])


PREDICT_ERRORS = [
    (b'{"points": [[NaN, 60]], "labels": [1]}', 422, "finite"),
    (b'{"points": [[Infinity, 60]], "labels": [1]}', 422, "finite"),
    (b'{"points": [[800, 60]], "labels": [1]}', 400, "inside the image"),
    (b'{"points": [[-1, 60]], "labels": [1]}', 400, "inside the image"),
    (b'{"points": [[1, 2, 3]], "labels": [1]}', 422, "points"),
    (b'{"points": [[1, 2], [3, 4]], "labels": [1]}', 400, "point_labels must have shape"),
    (b'{"points": [[1, 2]], "labels": [2]}', 400, "point_labels must be 1"),
    (b'{"points": [[1, 2]]}', 400, "together"),
    (b'{"box": [50, 50, 10, 10]}', 400, "x0 <= x1"),
    (b'{"box": [1, 2, 3]}', 422, "box"),
    (b"{}", 400, "at least one prompt"),
    (b'{"points": [[1, 2]], "labels": [1], "colour": 1}', 422, "colour"),
    (b'{"points": [[1, 2]], "labels": [1]', 422, "JSON"),
    (b"[1, 2]", 422, "body"),
    (b'{"box": [1, 2, 3, 4], "mask_input": {"token": "nope", "index": 0}}', 400, "unknown"),
]  # fmt: skip


@pytest.mark.parametrize("body,status,text", PREDICT_ERRORS)
def test_predict_bad_input_is_a_clear_4xx(
    client: TestClient, body: bytes, status: int, text: str
) -> None:
    image_id = ids(client)["a.png"]
    r = client.post(
        f"/api/images/{image_id}/predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert text in r.json()["detail"]


def test_mask_input_token_is_bound_to_its_image(client: TestClient) -> None:
    a, b = ids(client)["a.png"], ids(client)["sub/b.jpg"]
    token = client.post(f"/api/images/{a}/predict", json={"box": [0, 0, 50, 50]}).json()["token"]
    for index, text in [(0, "unknown or expired"), (3, "unknown or expired")]:
        body = {"box": [0, 0, 50, 50], "mask_input": {"token": token, "index": index}}
        r = client.post(f"/api/images/{b}/predict", json=body)
        assert r.status_code == 400 and text in r.json()["detail"]
    body = {"box": [0, 0, 50, 50], "mask_input": {"token": token, "index": 3}}
    r = client.post(f"/api/images/{a}/predict", json=body)
    assert r.status_code == 400 and "index must be in 0..2" in r.json()["detail"]


def test_everything_returns_proposals(client: TestClient) -> None:
    image_id = ids(client)["a.png"]
    url = f"/api/images/{image_id}/everything"
    body = {"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0}
    out = client.post(url, json={**body, "box_nms_thresh": 1, "max_masks": 3}).json()
    assert out["found"] >= len(out["masks"]) == 3
    ious = [m["predicted_iou"] for m in out["masks"]]
    assert ious == sorted(ious, reverse=True)
    for m in out["masks"]:
        mask = decode_coco_rle(m["segmentation"])
        assert mask.shape == (120, 160) and int(mask.sum()) == m["area"]
    assert client.post(url, json={"points_per_side": 0}).status_code == 422
    assert client.post(url, json={"pred_iou_thresh": 2}).status_code == 422


def test_annotations_crud_autosave_and_resume(
    client: TestClient, folder: Path, tiny_sam: Sam
) -> None:
    image_id = ids(client)["a.png"]
    url = f"/api/images/{image_id}/annotations"
    assert client.get(url).json() == []
    seg = square(120, 160, 30, 90, 40, 110)
    made = client.post(url, json={"label": "red", "segmentation": seg, "predicted_iou": 0.9})
    assert made.status_code == 201
    ann = made.json()
    assert ann["id"] == 1 and ann["label"] == "red" and ann["area"] == 60 * 70
    assert ann["bbox"] == [40.0, 30.0, 70.0, 60.0] and ann["segmentation"] == seg
    # an uncompressed RLE (what predict returns) is stored compressed
    full = {"size": [120, 160], "counts": [0, 120 * 160]}
    second = client.post(url, json={"label": "all", "segmentation": full})
    assert second.json()["id"] == 2 and second.json()["area"] == 120 * 160
    assert client.patch(f"{url}/1", json={"label": "car"}).json()["label"] == "car"
    assert client.delete(f"{url}/2").status_code == 204
    saved = json.loads((folder / ".samkit" / "annotations" / f"{image_id}.json").read_text())
    assert saved["file_name"] == "a.png" and [a["label"] for a in saved["annotations"]] == ["car"]

    reopened = page_client(create_app(folder, tiny_sam))  # a restart resumes
    assert reopened.get(url).json() == client.get(url).json()
    assert reopened.post(url, json={"label": "x", "segmentation": seg}).json()["id"] == 3


ANNOTATION_ERRORS = [
    ({"label": "", "segmentation": "SEG"}, 400, "label"),
    ({"label": "a\nb", "segmentation": "SEG"}, 400, "printable"),
    ({"label": "x" * 101, "segmentation": "SEG"}, 422, "label"),
    ({"label": "a"}, 422, "segmentation"),
    ({"label": "a", "segmentation": {"size": [10, 10], "counts": "0"}}, 400, "does not match"),
    ({"label": "a", "segmentation": {"size": [120, 160], "counts": "!!"}}, 400, "RLE"),
    ({"label": "a", "segmentation": {"size": [120, 160], "counts": [5]}}, 400, "RLE"),
    ({"label": "a", "segmentation": {"size": [120, 160], "counts": [19200]}}, 400, "empty"),
]


@pytest.mark.parametrize("body,status,text", ANNOTATION_ERRORS)
def test_annotation_bad_input(client: TestClient, body: dict, status: int, text: str) -> None:
    image_id = ids(client)["a.png"]
    if body.get("segmentation") == "SEG":
        body = {**body, "segmentation": square(120, 160, 0, 5, 0, 5)}
    r = client.post(f"/api/images/{image_id}/annotations", json=body)
    assert r.status_code == status, r.text
    assert text in r.json()["detail"]


def test_unknown_annotation_ids(client: TestClient) -> None:
    url = f"/api/images/{ids(client)['a.png']}/annotations"
    assert client.patch(f"{url}/7", json={"label": "x"}).status_code == 404
    assert client.delete(f"{url}/7").status_code == 404
    assert client.delete(f"{url}/seven").status_code == 422


def png_bytes(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_keep_a_safe_file_name(client: TestClient, folder: Path) -> None:
    data = png_bytes(20, 30)
    r = client.post("/api/images", files={"file": ("../../evil.png", data, "image/png")})
    assert r.status_code == 201, r.text
    (up,) = r.json()
    assert re.fullmatch(r"evil-[0-9a-f]{16}\.png", up["file_name"]), up["file_name"]
    assert (up["width"], up["height"]) == (30, 20)
    assert (folder / up["file_name"]).read_bytes() == data
    assert not (folder.parent / "evil.png").exists()
    (again,) = client.post("/api/images", files={"file": ("evil.png", data)}).json()
    assert again["id"] == up["id"]  # the same file under the same name: one image
    assert up["id"] in ids(client).values()
    other = png_bytes(21, 30)  # another file of the same name: its own image
    (second,) = client.post("/api/images", files={"file": ("evil.png", other)}).json()
    assert second["file_name"].startswith("evil-") and second["id"] != up["id"]
    for sent, kept in [
        ("C:\\Users\\me\\cat photo (1).JPG", "cat_photo_1_-"),
        (".hidden.png", "hidden-"),
        ("../..", "upload-"),
    ]:
        (stored,) = client.post("/api/images", files={"file": (sent, png_bytes(9, 9))}).json()
        assert stored["file_name"].startswith(kept) and "/" not in stored["file_name"], sent
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")  # kept re-encoded as PNG
    (stored,) = client.post("/api/images", files={"file": ("x.gif", gif.getvalue())}).json()
    assert re.fullmatch(r"x-[0-9a-f]{16}\.png", stored["file_name"])


def test_upload_limits(folder: Path, tiny_sam: Sam) -> None:
    client = page_client(create_app(folder, tiny_sam, max_body_bytes=20_000, max_pixels=10_000))
    r = client.post("/api/images", files={"file": ("a.txt", b"not an image")})
    assert r.status_code == 400 and "not a recognised image" in r.json()["detail"]
    r = client.post("/api/images", files={"file": ("big.png", png_bytes(101, 100))})
    assert r.status_code == 400 and "max_pixels" in r.json()["detail"]
    noise = np.random.default_rng(0).integers(0, 255, (99, 99, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 20_000
    r = client.post("/api/images", files={"file": ("noise.png", buf.getvalue())})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert client.post("/api/images").status_code == 422  # no file field


def test_uploads_are_capped_per_request(client: TestClient, folder: Path, tiny_sam: Sam) -> None:
    before = sorted(folder.rglob("*"))
    many = [("file", (f"{i}.png", png_bytes(10 + i, 10))) for i in range(17)]
    r = client.post("/api/images", files=many)  # the default: 16 images a request
    assert r.status_code == 413 and "at most 16 images" in r.json()["detail"]
    assert sorted(folder.rglob("*")) == before

    client = page_client(create_app(folder, tiny_sam, max_upload_files=2, max_upload_bytes=3_000))
    small = many[:3]
    r = client.post("/api/images", files=small)  # 3 images: one too many
    assert r.status_code == 413
    assert (
        "at most 2 images and 3,000 bytes" in r.json()["detail"] and "got 3" in r.json()["detail"]
    )
    noise = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 3_000
    r = client.post("/api/images", files={"file": ("noise.png", buf.getvalue())})
    assert r.status_code == 413 and "3,000 bytes" in r.json()["detail"]
    bad = [small[0], ("file", ("b.txt", b"not an image"))]
    r = client.post("/api/images", files=bad)  # all or nothing: the good one is not kept
    assert r.status_code == 400 and "upload 2 of 2" in r.json()["detail"]
    assert sorted(folder.rglob("*")) == before
    r = client.post("/api/images", files=small[:2])
    assert r.status_code == 201 and [im["height"] for im in r.json()] == [10, 11]
    assert client.get("/api/info").json()["max_upload_files"] == 2


def annotate_both(client: TestClient) -> dict[str, str]:
    images = ids(client)
    a, b = images["a.png"], images["sub/b.jpg"]
    for image_id, seg, label in [
        (a, square(120, 160, 30, 90, 40, 110), "car"),
        (a, square(120, 160, 5, 20, 5, 30), "bird"),
        (b, square(90, 70, 10, 40, 10, 50), "car"),
    ]:
        body = {"label": label, "segmentation": seg}
        assert client.post(f"/api/images/{image_id}/annotations", json=body).status_code == 201
    return images


def test_export_coco_and_zip(client: TestClient, folder: Path) -> None:
    annotate_both(client)
    out = client.post("/api/export", json={"format": "coco"}).json()
    assert out["images"] == 2 and out["annotations"] == 3 and out["labels"] == ["bird", "car"]
    coco = read_coco(folder / out["folder"] / "annotations.json")
    names = {c["id"]: c["name"] for c in coco.categories.values()}
    by_file = {im["file_name"]: i for i, im in coco.images.items()}
    anns = coco.annotations[by_file["a.png"]]
    assert [names[a["category_id"]] for a in anns] == ["car", "bird"]
    assert coco.masks(by_file["a.png"])[0].sum() == 60 * 70
    assert coco.masks(by_file["sub/b.jpg"])[0][10:40, 10:50].all()
    z = client.get("/api/export/coco.zip")
    assert z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert json.loads(zf.read("annotations.json")) == json.loads(
            (folder / out["folder"] / "annotations.json").read_text()
        )
    assert client.get("/api/export/tiff.zip").status_code == 404
    assert client.post("/api/export", json={"format": "tiff"}).status_code == 422


def test_export_sa1b_png_yolo(client: TestClient, folder: Path) -> None:
    annotate_both(client)
    root = folder / ".samkit" / "export"
    client.post("/api/export", json={"format": "sa1b"})
    info, anns = read_sa1b(root / "sa1b" / "sub" / "b.json")
    assert info["file_name"] == "sub/b.jpg" and [a["label"] for a in anns] == ["car"]
    client.post("/api/export", json={"format": "png"})
    records = read_png_folder(root / "png" / "a")
    assert [int(r["segmentation"].sum()) for r in records] == [60 * 70, 15 * 25]
    assert (root / "png" / "a" / "labels.txt").read_text() == "car\nbird\n"
    client.post("/api/export", json={"format": "yolo"})
    assert (root / "yolo" / "classes.txt").read_text() == "bird\ncar\n"
    entries = read_yolo(root / "yolo" / "labels" / "a.txt", 120, 160)
    assert [cls for cls, _ in entries] == [1, 0]
    assert yolo_masks(entries[:1], 120, 160)[0][30:90, 40:110].all()

    # A later export replaces the earlier one whole: deleted objects leave no files behind.
    url = f"/api/images/{ids(client)['a.png']}/annotations"
    for ann in client.get(url).json():
        client.delete(f"{url}/{ann['id']}")
    client.post("/api/export", json={"format": "png"})
    assert not (root / "png" / "a").exists() and (root / "png" / "sub" / "b").is_dir()


def test_export_lists_what_it_could_not_write(client: TestClient, folder: Path) -> None:
    images = annotate_both(client)
    a = f"/api/images/{images['a.png']}/annotations"
    line = np.zeros((120, 160), dtype=bool)
    line[10:100, 130] = True  # 1 pixel wide: YOLO-seg has no polygon for it
    two = np.zeros((120, 160), dtype=bool)
    two[95:110, 5:20] = two[95:110, 130:150] = True  # two parts: two YOLO lines, one class
    thin = client.post(a, json={"label": "pole", "segmentation": encode_coco_rle(line)}).json()
    client.post(a, json={"label": "bird", "segmentation": encode_coco_rle(two)})

    out = client.post("/api/export", json={"format": "yolo"}).json()
    assert out["images"] == 2 and out["annotations"] == 4
    [skip] = out["skipped"]
    assert (skip["file_name"], skip["annotation"]) == ("a.png", thin["id"])
    assert "YOLO-seg cannot hold it" in skip["reason"]
    entries = read_yolo(folder / out["folder"] / "labels" / "a.txt", 120, 160)
    assert [cls for cls, _ in entries] == [1, 0, 0, 0]  # car, bird, then bird's two parts
    z = client.get("/api/export/yolo.zip")
    assert z.headers["x-samkit-skipped"] == "1"
    coco = client.post("/api/export", json={"format": "coco"}).json()
    assert coco["annotations"] == 5 and coco["skipped"] == []

    # The image under an annotation replaced by one of another size: every format says so.
    Image.new("RGB", (30, 20)).save(folder / "sub" / "b.jpg")
    for fmt in ("coco", "sa1b", "png", "yolo"):
        out = client.post("/api/export", json={"format": fmt}).json()
        assert out["images"] == 1, fmt
        assert any(
            k["file_name"] == "sub/b.jpg"
            and "90x70 (HxW) but the image is now 20x30" in k["reason"]
            for k in out["skipped"]
        ), out["skipped"]


def test_a_restart_removes_the_temporaries_of_a_killed_export(folder: Path, tiny_sam: Sam) -> None:
    root = folder / ".samkit" / "export"
    for stale in (".coco.x1y2.tmp", ".png.old.tmp"):  # building; being swapped out
        (root / stale / "sub").mkdir(parents=True)
        (root / stale / "sub" / "0.png").write_bytes(b"half")
    (root / "coco").mkdir()
    (root / "coco" / "annotations.json").write_text("{}")  # the last export, whole
    create_app(folder, tiny_sam)
    assert sorted(p.name for p in root.iterdir()) == ["coco"]
    assert (root / "coco" / "annotations.json").read_text() == "{}"


def test_segment_everything_defaults_are_the_generators() -> None:
    """The API's segment-everything defaults are SamAutomaticMaskGenerator's, not a copy."""
    import inspect

    from samkit import SamAutomaticMaskGenerator
    from samkit.serve.schemas import EverythingRequest

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    body = EverythingRequest()
    for name in ("points_per_side", "pred_iou_thresh", "stability_score_thresh",
                 "box_nms_thresh", "min_mask_region_area"):  # fmt: skip
        assert getattr(body, name) == params[name].default, name

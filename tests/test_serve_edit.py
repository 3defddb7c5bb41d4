"""Mask editing over the annotator's API (issue 27): PATCH with a new mask (source "edited"),
predict with an edited mask as the mask prompt, and an object's outline as polygons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit import SamPredictor, load
from samkit.masks import mask_iou
from samkit.modeling import Sam
from samkit.rle import decode_coco_rle, encode_coco_rle
from samkit.serve import create_app
from samkit.serve.engine import MASK_LOGIT, mask_prompt

H, W = 120, 160  # a.png of the image_folder fixture


@pytest.fixture
def client(image_folder: Path, tiny_sam: Sam) -> TestClient:
    app = create_app(image_folder, tiny_sam, model_name="samkit_tiny")
    return TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


def image_id(client: TestClient, name: str = "a.png") -> str:
    return {im["file_name"]: im["id"] for im in client.get("/api/images").json()}[name]


def boxes(*spans: tuple[int, int, int, int], shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """A mask of the boxes (y0, y1, x0, x1)."""
    mask = np.zeros(shape, dtype=bool)
    for y0, y1, x0, x1 in spans:
        mask[y0:y1, x0:x1] = True
    return mask


def uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """The page's RLE: column-major counts as a list of ints, the first run of zeros."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + counts}


def test_patch_with_a_mask_stores_it_and_marks_it_edited(
    client: TestClient, image_folder: Path
) -> None:
    url = f"/api/images/{image_id(client)}/annotations"
    before = boxes((30, 90, 40, 110))
    made = client.post(url, json={"label": "red", "segmentation": encode_coco_rle(before)}).json()
    assert made["source"] == "manual"

    painted = boxes((30, 90, 40, 110), (10, 20, 10, 30))  # a brush stroke added a second part
    r = client.patch(f"{url}/{made['id']}", json={"segmentation": uncompressed(painted)})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert np.array_equal(decode_coco_rle(edited["segmentation"]), painted)
    assert edited["area"] == int(painted.sum()) == made["area"] + 200
    assert edited["bbox"] == [10.0, 10.0, 100.0, 80.0]
    assert edited["source"] == "edited" and edited["label"] == "red"
    assert edited["point_coords"] == made["point_coords"]  # the prompt it was made with
    stored = json.loads(next((image_folder / ".samkit" / "annotations").glob("*.json")).read_text())
    assert stored["annotations"] == [edited]

    # The COCO export says so; an image's counts list "edited" once some mask was.
    coco = client.post("/api/export", json={"format": "coco"}).json()
    doc = json.loads((image_folder / coco["folder"] / "annotations.json").read_text())
    assert [a["samkit_source"] for a in doc["annotations"]] == ["edited"]
    assert client.get(f"/api/images/{image_id(client)}").json()["sources"] == {
        "manual": 0,
        "text": 0,
        "proposal": 0,
        "edited": 1,
    }

    # Undo on the page: the mask it had and the source it had; a relabel keeps the mask.
    back = client.patch(
        f"{url}/{made['id']}", json={"segmentation": made["segmentation"], "source": "manual"}
    ).json()
    assert {k: back[k] for k in made} == made
    relabelled = client.patch(f"{url}/{made['id']}", json={"label": "car"}).json()
    assert relabelled == {**made, "label": "car"}
    # A deleted annotation comes back with its source (undo of a delete re-creates it).
    again = client.post(
        url, json={"label": "x", "segmentation": made["segmentation"], "source": "edited"}
    )
    assert again.status_code == 201 and again.json()["source"] == "edited"


@pytest.mark.parametrize(
    "body,status,text",
    [
        ({}, 400, "at least one of label, segmentation and source"),
        ({"segmentation": {"size": [10, 10], "counts": [100]}}, 400, "does not match the image"),
        ({"segmentation": {"size": [H, W], "counts": [H * W]}}, 400, "empty"),
        ({"segmentation": {"size": [H, W], "counts": [5]}}, 400, "RLE"),
        ({"segmentation": {"size": [H, W]}}, 400, "counts"),
        ({"source": "painted"}, 422, "source"),
        ({"label": ""}, 400, "label"),
    ],
)
def test_patch_bad_input_changes_nothing(
    client: TestClient, body: dict[str, Any], status: int, text: str
) -> None:
    url = f"/api/images/{image_id(client)}/annotations"
    made = client.post(
        url, json={"label": "red", "segmentation": encode_coco_rle(boxes((0, 5, 0, 5)))}
    )
    r = client.patch(f"{url}/{made.json()['id']}", json=body)
    assert r.status_code == status, r.text
    assert text in r.json()["detail"]
    assert client.get(url).json() == [made.json()]
    assert (
        client.patch(
            f"{url}/99", json={"segmentation": uncompressed(boxes((0, 5, 0, 5)))}
        ).status_code
        == 404
    )


def test_predict_takes_an_edited_mask(client: TestClient) -> None:
    """The mask is validated (the image's size; not with mask_input) and is the model's mask
    prompt: the answer is the one the predictor gives for `mask_prompt` of it."""
    url = f"/api/images/{image_id(client)}/predict"
    point = {"points": [[70, 60]], "labels": [1], "multimask": False}
    first = client.post(url, json=point).json()

    wrong = client.post(
        url, json={**point, "mask": uncompressed(boxes((0, 5, 0, 5), shape=(60, 80)))}
    )
    assert wrong.status_code == 400
    assert wrong.json()["detail"] == "mask: RLE size [60, 80] does not match the image [120, 160]"
    both = client.post(
        url,
        json={
            **point,
            "mask": uncompressed(boxes((0, 5, 0, 5))),
            "mask_input": {"token": first["token"], "index": 0},
        },
    )
    assert both.status_code == 400 and "not both" in both.json()["detail"]
    assert (
        client.post(url, json={**point, "mask": {"size": [H, W], "counts": [7]}}).status_code == 400
    )

    edited = boxes((30, 90, 40, 110))
    answer = client.post(url, json={**point, "mask": uncompressed(edited)}).json()
    state = client.app.state  # type: ignore[attr-defined]
    sam: Sam = state.engine.model
    predictor = SamPredictor(sam)
    predictor.set_image(state.project.load(image_id(client)))
    low_res = mask_prompt(edited, sam.image_encoder.img_size, sam.prompt_encoder.mask_input_size)
    masks, _, _ = predictor.predict(
        np.array([[70, 60]]), np.array([1]), mask_input=low_res, multimask_output=False
    )
    assert np.array_equal(decode_coco_rle(answer["masks"][0]["segmentation"]), masks[0])
    plain, _, _ = predictor.predict(np.array([[70, 60]]), np.array([1]), multimask_output=False)
    assert not np.array_equal(masks[0], plain[0])  # the mask prompt changed the answer


def test_mask_prompt_puts_the_mask_where_the_image_goes() -> None:
    """The image is resized (longest side to the input size) and padded bottom-right; the
    mask follows it, then shrinks to the low-res size: +logit inside, -logit outside and in
    the padding, 0 on a boundary that halves a low-res pixel."""
    mask = np.zeros((100, 200), dtype=bool)  # HxW, resized to 64x128 in a 128 frame
    mask[:, :100] = True  # the left half
    low = mask_prompt(mask, input_size=128, low_res_size=(32, 32))
    assert low.shape == (1, 32, 32) and low.dtype == np.float32
    # The image covers rows 0..16 of 32 (64 / 128 * 32) and all columns; the left half 0..16.
    assert np.all(low[0, :16, :16] == MASK_LOGIT)
    assert np.all(low[0, :16, 16:] == -MASK_LOGIT)
    assert np.all(low[0, 16:, :] == -MASK_LOGIT)  # the padding
    tall = mask_prompt(np.ones((90, 30), dtype=bool), input_size=128, low_res_size=(64, 64))
    inside = tall[0] > 0  # 90x30 -> 128x43: 64 rows and 21.5 columns of 64
    assert inside[:, :21].all() and not inside[:, 22:].any()
    assert tall[0, 0, 21] == pytest.approx(0.0, abs=0.5)  # the half-covered column


def test_a_predicted_mask_fed_back_comes_back(tmp_path: Path) -> None:
    """samkit_default: a mask the model predicted, sent back as an edited mask with its click
    (single-mask output), gives the same mask again (IoU >= 0.9): the best mask of a click on
    the red box and on the disc, and the second candidate of an ambiguous click on the
    background, which the click alone does not give (IoU < 0.5): there the mask prompt decides,
    and a mask put in the wrong frame (stretched to the square, or upside down) gives 0.88."""
    from browser_kit import scene

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(scene()).save(folder / "scene.png")  # 240x320: padded to a square
    app = create_app(folder, load("samkit_default"), model_name="samkit_default")
    client = TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    url = f"/api/images/{image_id(client, 'scene.png')}/predict"
    for x, y, which in [(95, 110, "best"), (240, 120, "best"), (60, 180, 1)]:
        click = {"points": [[x, y]], "labels": [1]}
        first = client.post(url, json=click).json()
        chosen = first["masks"][first["best"] if which == "best" else which]
        mask = decode_coco_rle(chosen["segmentation"])
        alone = client.post(url, json={**click, "multimask": False}).json()["masks"][0]
        again = client.post(url, json={**click, "mask": chosen["segmentation"], "multimask": False})
        assert again.status_code == 200, again.text
        fed_back = decode_coco_rle(again.json()["masks"][0]["segmentation"])
        assert float(mask_iou(fed_back, mask)) >= 0.9, (x, y)
        if which != "best":
            assert float(mask_iou(decode_coco_rle(alone["segmentation"]), mask)) < 0.5


def test_polygons_of_an_object(client: TestClient) -> None:
    """One polygon per part, holes marked; vertices on the border pixels' centres."""
    url = f"/api/images/{image_id(client)}/annotations"
    ring = boxes((10, 50, 10, 60)) & ~boxes((20, 40, 20, 40))  # a frame: one hole
    two = ring | boxes((70, 100, 100, 150))  # and a second part
    made = client.post(url, json={"label": "two", "segmentation": encode_coco_rle(two)}).json()
    out = client.get(f"{url}/{made['id']}/polygons", params={"tolerance": 0}).json()
    assert out["tolerance"] == 0
    polygons = sorted(out["polygons"], key=lambda p: p["exterior"][0][1])
    assert len(polygons) == 2
    frame, block = polygons
    assert sorted(map(tuple, frame["exterior"])) == [(10, 10), (10, 49), (59, 10), (59, 49)]
    assert len(frame["holes"]) == 1 and block["holes"] == []
    xs, ys = zip(*frame["holes"][0], strict=True)
    assert (min(xs), max(xs), min(ys), max(ys)) == (19, 40, 19, 40)  # the hole's border pixels
    assert sorted(map(tuple, block["exterior"])) == [(100, 70), (100, 99), (149, 70), (149, 99)]

    assert client.get(f"{url}/{made['id']}/polygons").json()["tolerance"] == 1.0
    assert client.get(f"{url}/{made['id']}/polygons", params={"tolerance": 11}).status_code == 422
    assert (
        client.get(f"{url}/{made['id']}/polygons", params={"tolerance": "nan"}).status_code == 422
    )
    assert client.get(f"{url}/99/polygons").status_code == 404

"""Text prompts in the annotator's API: a phrase alone or with clicks, what the page is told
about the model, bad phrases, a model without a text head, and the phrase kept with an object.

The model is samkit_default with a freshly enabled (untrained) text head, written to a weights
file and loaded back with `samkit.load`, as `samkit serve --model FILE` loads it: its masks
mean nothing, so the tests compare the API with `SamPredictor` on the same model.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import samkit.text
from samkit import SamPredictor, load
from samkit.checkpoints import write_safetensors
from samkit.io import load_image, read_coco
from samkit.modeling import Sam
from samkit.rle import decode_coco_rle, encode_coco_rle
from samkit.serve import background, create_app
from samkit.text import get_text_encoder

PHRASE = "the red box"


@pytest.fixture(scope="module")
def text_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """samkit_default with a fresh text head (seeded), as a weights file with its metadata."""
    model = load("samkit_default")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.prompt_encoder.enable_text(384)
    path = tmp_path_factory.mktemp("weights") / "samkit_default_text.safetensors"
    metadata = {"samkit_variant": "samkit_default", "samkit_text_encoder": "minilm"}
    write_safetensors(model.state_dict(), path, metadata=metadata)
    return path


@pytest.fixture(scope="module")
def text_sam(text_weights: Path) -> Sam:
    return load(text_weights)


def page_client(folder: Path, model: Sam) -> TestClient:
    """A client as the annotator's page is one: by 127.0.0.1, with X-Samkit on every call."""
    app = create_app(folder, model, model_name="text")
    return TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


@pytest.fixture
def client(image_folder: Path, text_sam: Sam) -> TestClient:
    return page_client(image_folder, text_sam)


def predict_url(client: TestClient) -> str:
    images = {im["file_name"]: im["id"] for im in client.get("/api/images").json()}
    return f"/api/images/{images['a.png']}/predict"


def predictor_on_a(model: Sam, folder: Path) -> SamPredictor:
    predictor = SamPredictor(model)
    predictor.set_image(load_image(folder / "a.png"))
    return predictor


def only_mask(answer: dict[str, Any]) -> tuple[np.ndarray, float]:
    (m,) = answer["masks"]
    return decode_coco_rle(m["segmentation"]), m["predicted_iou"]


def test_info_and_page_say_whether_the_model_takes_text(
    client: TestClient, image_folder: Path, tiny_sam: Sam
) -> None:
    info = client.get("/api/info").json()
    assert info["text"] is True and info["text_encoder"] == "minilm"
    without = page_client(image_folder, tiny_sam).get("/api/info").json()
    assert without["text"] is False and without["text_encoder"] is None
    page = client.get("/").text
    assert '<div id="text-box" hidden>' in page  # shown by text.js once /api/info says so
    script = client.get("/static/text.js")
    assert script.status_code == 200 and "export async function initTextBox" in script.text


def test_a_phrase_alone_gives_the_predictors_mask(
    client: TestClient, text_sam: Sam, image_folder: Path
) -> None:
    url = predict_url(client)
    r = client.post(url, json={"text": f"  {PHRASE}\n", "multimask": False})  # stripped
    assert r.status_code == 200, r.text
    mask, score = only_mask(r.json())
    assert mask.shape == (120, 160)
    masks, scores, _ = predictor_on_a(text_sam, image_folder).predict(
        text=PHRASE, multimask_output=False
    )
    assert np.array_equal(mask, masks[0]) and score == pytest.approx(float(scores[0]), abs=1e-5)
    # The phrase reaches the model: another one gives another score.
    _, other = only_mask(client.post(url, json={"text": "a blue disc", "multimask": False}).json())
    assert other != pytest.approx(score, abs=1e-6)
    three = client.post(url, json={"text": PHRASE}).json()["masks"]  # multimask stays allowed
    assert len(three) == 3


def test_clicks_refine_a_phrase_with_its_mask_fed_back(
    client: TestClient, text_sam: Sam, image_folder: Path
) -> None:
    url = predict_url(client)
    first = client.post(url, json={"text": PHRASE, "multimask": False}).json()
    refine = {
        "points": [[70, 60], [5, 5]],
        "labels": [1, 0],
        "mask_input": {"token": first["token"], "index": 0},
        "multimask": False,
    }
    mask, score = only_mask(client.post(url, json={**refine, "text": PHRASE}).json())

    predictor = predictor_on_a(text_sam, image_folder)
    _, _, low_res = predictor.predict(text=PHRASE, multimask_output=False)
    masks, scores, _ = predictor.predict(
        point_coords=np.array([[70.0, 60.0], [5.0, 5.0]]),
        point_labels=np.array([1, 0]),
        mask_input=low_res,
        multimask_output=False,
        text=PHRASE,
    )
    assert np.array_equal(mask, masks[0]) and score == pytest.approx(float(scores[0]), abs=1e-5)
    _, without_text = only_mask(client.post(url, json=refine).json())
    assert without_text != pytest.approx(score, abs=1e-6)


def test_each_phrase_is_encoded_once(client: TestClient) -> None:
    url, key = predict_url(client), ("minilm", PHRASE)
    samkit.text._VECTORS.pop(key, None)
    answers = [client.post(url, json={"text": PHRASE, "multimask": False}).json()]
    vector = samkit.text._VECTORS.get(key)
    assert vector is not None
    assert torch.allclose(vector, get_text_encoder("minilm").encode([PHRASE])[0], atol=1e-6)
    answers.append(
        client.post(url, json={"text": PHRASE, "points": [[9, 9]], "labels": [1]}).json()
    )
    assert samkit.text._VECTORS.get(key) is vector  # taken from the cache
    assert answers[1]["masks"][0]["predicted_iou"] != answers[0]["masks"][0]["predicted_iou"]


@pytest.mark.parametrize(
    "body,status,detail",
    [
        ({"text": ""}, 422, "text: String should have at least 1 character"),
        ({"text": " \t\n "}, 422, "text: String should have at least 1 character"),
        ({"text": "x" * 501}, 422, "text: String should have at most 500 characters"),
        ({"text": 42}, 422, "text: Input should be a valid string"),
        ({"text": ["a", "b"]}, 422, "text: Input should be a valid string"),
        ({"text": "字" * 300}, 400, "text encoder reads at most 256"),  # 302 tokens
        ({"mask_input": {"token": "x", "index": 0}}, 400, "points (with labels), a box or a text"),
    ],
)
def test_bad_phrases_are_refused(
    client: TestClient, body: dict[str, Any], status: int, detail: str
) -> None:
    r = client.post(predict_url(client), json=body)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_a_model_without_a_text_head_says_so(image_folder: Path, tiny_sam: Sam) -> None:
    client = page_client(image_folder, tiny_sam)
    url = predict_url(client)
    r = client.post(url, json={"text": PHRASE, "multimask": False})
    assert r.status_code == 400
    assert "has no text head: it takes points, boxes and masks only" in r.json()["detail"]
    r = client.post(url, json={"text": PHRASE, "points": [[9, 9]], "labels": [1]})
    assert r.status_code == 400 and "no text head" in r.json()["detail"]
    assert client.post(url, json={"points": [[9, 9]], "labels": [1]}).status_code == 200


def test_an_object_keeps_the_phrase_it_was_asked_with(
    client: TestClient, image_folder: Path
) -> None:
    url = predict_url(client).replace("/predict", "/annotations")
    mask = np.zeros((120, 160), dtype=bool)
    mask[30:90, 40:110] = True
    base = {"label": "box", "segmentation": encode_coco_rle(mask)}
    assert client.post(url, json={**base, "text": f" {PHRASE} "}).status_code == 201
    assert client.post(url, json=base).status_code == 201
    assert client.post(url, json={**base, "text": ""}).status_code == 422
    stored = client.get(url).json()
    assert [a.get("text") for a in stored] == [PHRASE, None]
    assert client.post("/api/export", json={"format": "coco"}).json()["annotations"] == 2
    coco = read_coco(image_folder / ".samkit" / "export" / "coco" / "annotations.json")
    assert sum(len(anns) for anns in coco.annotations.values()) == 2


def test_phrases_over_a_real_socket(image_folder: Path, text_sam: Sam) -> None:
    """Concurrent phrases from request threads each get the answer they get alone; the
    request guard still wants X-Samkit."""
    app = create_app(image_folder, text_sam)
    phrases = ["the red box", "a blue disc", "the big square on the left", "a small circle"]
    page = {"X-Samkit": "1"}
    with background(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        image_id = http.get("/api/images").json()[0]["id"]
        path = f"/api/images/{image_id}/predict"
        assert http.post(path, json={"text": PHRASE}).status_code == 403

        def score(phrase: str) -> float:
            r = http.post(path, json={"text": phrase, "multimask": False}, headers=page)
            r.raise_for_status()
            return float(r.json()["masks"][0]["predicted_iou"])

        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(score, phrases * 2))
        alone = [score(p) for p in phrases]
    assert together == alone * 2
    assert all(("minilm", p) in samkit.text._VECTORS for p in phrases)


def test_samkit_text_answers_phrases_with_its_grounder(image_folder: Path) -> None:
    """The bundled samkit_text (a text grounder, no text token) through the same API: the
    page is told it takes text, and a phrase alone or with a click gives the predictor's
    masks."""
    model = load("samkit_text")
    client = page_client(image_folder, model)
    assert client.get("/api/info").json()["text"] is True
    url = predict_url(client)
    predictor = predictor_on_a(model, image_folder)
    for body, kwargs in (
        ({"text": "the red disc", "multimask": False}, {}),
        (
            {"text": "the red disc", "points": [[40, 40]], "labels": [1], "multimask": False},
            {"point_coords": np.array([[40, 40]]), "point_labels": np.array([1])},
        ),
    ):
        r = client.post(url, json=body)
        assert r.status_code == 200, r.text
        mask, score = only_mask(r.json())
        masks, scores, _ = predictor.predict(text="the red disc", multimask_output=False, **kwargs)
        assert np.array_equal(mask, masks[0]) and score == pytest.approx(float(scores[0]), abs=1e-5)

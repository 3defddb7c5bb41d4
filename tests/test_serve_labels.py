"""The annotator's label set and progress API: label set CRUD and its bad inputs, COCO
categories from the set, image states set, listed and filtered, counts per state and label,
and `samkit serve --labels` parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from samkit.modeling import Sam
from samkit.rle import encode_coco_rle
from samkit.serve import create_app
from samkit.serve.labelset import MAX_LABELS, parse_labels


@pytest.fixture
def client(image_folder: Path, tiny_sam: Sam) -> TestClient:
    app = create_app(image_folder, tiny_sam, model_name="samkit_tiny")
    return TestClient(app, base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


def ids(client: TestClient) -> dict[str, str]:
    return {im["file_name"]: im["id"] for im in client.get("/api/images").json()}


def add(client: TestClient, image_id: str, label: str, h: int = 120, w: int = 160) -> None:
    mask = np.zeros((h, w), dtype=bool)
    mask[10:20, 10:30] = True
    body = {"label": label, "segmentation": encode_coco_rle(mask)}
    assert client.post(f"/api/images/{image_id}/annotations", json=body).status_code == 201


def test_label_set_is_stored_and_replaced(client: TestClient, image_folder: Path) -> None:
    assert client.get("/api/labels").json() == []
    sent = {"labels": [{"name": "cat"}, {"name": "dog", "color": "#00FF00"}]}
    got = client.put("/api/labels", json=sent).json()
    assert [x["name"] for x in got] == ["cat", "dog"]
    assert got[1]["color"] == "#00ff00" and got[0]["color"].startswith("#")
    stored = json.loads((image_folder / ".samkit" / "labels.json").read_text())
    assert stored == {"labels": got}
    # Rename, recolour and add: the whole set is sent in its new order.
    new = [{"name": "kitten", "color": "#112233"}, got[1], {"name": "car"}]
    client.put("/api/labels", json={"labels": new})
    assert [(x["name"], x["color"]) for x in client.get("/api/labels").json()][:2] == [
        ("kitten", "#112233"),
        ("dog", "#00ff00"),
    ]


@pytest.mark.parametrize(
    "labels, why",
    [
        ([], "1 to 99"),
        ([{"name": "cat"}, {"name": "cat"}], "twice"),
        ([{"name": "  "}], "non-empty"),
        ([{"name": "../etc"}], "may not contain"),
        ([{"name": "a\\b"}], "may not contain"),
        ([{"name": "cat", "color": "red"}], "#rrggbb"),
        ([{"name": "cat", "color": "#12345g"}], "#rrggbb"),
    ],
)
def test_bad_label_sets_are_refused(client: TestClient, labels: list[Any], why: str) -> None:
    client.put("/api/labels", json={"labels": [{"name": "keep"}]})
    r = client.put("/api/labels", json={"labels": labels})
    assert r.status_code == 400 and why in r.json()["detail"]
    assert [x["name"] for x in client.get("/api/labels").json()] == ["keep"]  # unchanged


def test_too_many_labels_and_malformed_bodies_are_refused(client: TestClient) -> None:
    many = [{"name": f"l{i}"} for i in range(MAX_LABELS + 1)]
    assert client.put("/api/labels", json={"labels": many}).status_code == 422
    assert client.put("/api/labels", json={"labels": [{"name": "a", "x": 1}]}).status_code == 422
    assert client.put("/api/labels", json={"labels": "cat"}).status_code == 422


def test_coco_categories_follow_the_set(client: TestClient, image_folder: Path) -> None:
    image = ids(client)["a.png"]
    add(client, image, "dog")
    add(client, image, "zebra")  # used, not in the set: after the set's labels
    client.put("/api/labels", json={"labels": [{"name": "cat"}, {"name": "dog"}]})
    out = client.post("/api/export", json={"format": "coco"}).json()
    assert out["labels"] == ["cat", "dog", "zebra"]
    doc = json.loads((image_folder / ".samkit/export/coco/annotations.json").read_text())
    assert doc["categories"] == [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "zebra"},
    ]
    assert sorted(a["category_id"] for a in doc["annotations"]) == [2, 3]


def test_image_states_are_set_listed_and_filtered(client: TestClient, image_folder: Path) -> None:
    image = ids(client)
    a, b = image["a.png"], image["sub/b.jpg"]
    assert {im["state"] for im in client.get("/api/images").json()} == {"new"}
    add(client, a, "cat")
    assert client.get(f"/api/images/{a}").json()["state"] == "in progress"
    assert client.put(f"/api/images/{b}/state", json={"state": "skipped"}).json()["state"] == (
        "skipped"
    )
    client.put(f"/api/images/{a}/state", json={"state": "done"})
    listed = {im["file_name"]: im["state"] for im in client.get("/api/images").json()}
    assert listed == {"a.png": "done", "sub/b.jpg": "skipped"}
    assert [im["id"] for im in client.get("/api/images?state=done").json()] == [a]
    assert [im["id"] for im in client.get("/api/images?q=SUB/").json()] == [b]
    assert client.get("/api/images?state=done&q=sub").json() == []
    progress = client.get("/api/progress").json()
    assert progress["states"] == {"new": 0, "in progress": 0, "done": 1, "skipped": 1}
    assert progress["labels"] == {"cat": 1}
    stored = json.loads((image_folder / ".samkit" / "progress.json").read_text())
    assert stored == {"states": {a: "done", b: "skipped"}}
    # Unmarking: the state follows the annotations again.
    client.put(f"/api/images/{a}/state", json={"state": "new"})
    assert client.get(f"/api/images/{a}").json()["state"] == "in progress"


def test_bad_states_are_refused(client: TestClient) -> None:
    a = ids(client)["a.png"]
    assert client.put(f"/api/images/{a}/state", json={"state": "finished"}).status_code == 422
    assert client.put("/api/images/0123/state", json={"state": "done"}).status_code == 404
    r = client.get("/api/images?state=finished")
    assert r.status_code == 400 and "state must be one of" in r.json()["detail"]


def test_progress_counts_labels_of_the_set_and_outside_it(client: TestClient) -> None:
    client.put("/api/labels", json={"labels": [{"name": "cat"}, {"name": "dog"}]})
    a = ids(client)["a.png"]
    add(client, a, "dog")
    add(client, a, "dog")
    add(client, a, "bird")
    assert client.get("/api/progress").json()["labels"] == {"cat": 0, "dog": 2, "bird": 1}


def test_labels_option_sets_the_project_set(image_folder: Path, tiny_sam: Sam) -> None:
    labels = parse_labels(" cat, dog ,car")
    assert [x["name"] for x in labels] == ["cat", "dog", "car"]
    create_app(image_folder, tiny_sam, labels=labels)
    stored = json.loads((image_folder / ".samkit" / "labels.json").read_text())
    assert [x["name"] for x in stored["labels"]] == ["cat", "dog", "car"]
    for bad in ("cat,,dog", "cat,cat", "a/b"):
        with pytest.raises(ValueError):
            parse_labels(bad)


def test_serve_refuses_bad_labels_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samkit.cli import main

    missing = str(tmp_path / "no_such_model.safetensors")
    code = main(["serve", str(tmp_path), "--labels", "cat,dog,cat", "--model", missing])
    err = capsys.readouterr().err
    assert code == 1 and "'cat' is in the set twice" in err and "Traceback" not in err
    assert "no_such_model" not in err  # refused before the model was looked for
    assert not (tmp_path / ".samkit").exists()

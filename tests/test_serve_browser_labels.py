"""The annotator's label set and progress in real headless Chromium (issue 27): key 2 labels
the next object with the set's second label and draws it in its colour; D marks an image
done, the list filters by state and searches file names; opening the page again resumes at
the image open last.

`python tests/test_serve_browser_labels.py docs/img/annotator_labels.png` makes a project of 4
images in each state with a label set of 3 on samkit_default and saves the screenshot for
docs/annotator.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from browser_kit import (
    MASK_SHOWN,
    annotator,
    canvas_colours,
    click_at,
    keys,
    needs_chromium,
    pick_point,
    wait_for,
)
from browser_kit import scene as make_scene
from PIL import Image
from scipy import ndimage

from samkit.rle import decode_coco_rle, encode_coco_rle

STATE = "window.samkit.state"
READY = "document.body.dataset.state === 'ready'"
GREEN = (0, 200, 0)


def client_of(session: dict[str, Any]) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})


def listed(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#images li .grow')].map((e) => e.textContent)"
        )
    )


@needs_chromium
def test_key_2_labels_the_next_object_in_its_colour(session: dict[str, Any]) -> None:
    client, driver = client_of(session), session["driver"]
    labels = [{"name": "cat", "color": "#ff00ff"}, {"name": "dog", "color": "#00c800"}]
    assert client.put("/api/labels", json={"labels": labels}).status_code == 200
    image_id = client.get("/api/images").json()[0]["id"]
    x, y = pick_point(client, image_id)
    driver.get(session["url"] + "/")
    wait_for(driver, f"{READY} && document.querySelectorAll('#labels li').length === 2")
    keys(driver, "2")
    assert driver.execute_script("return document.getElementById('label').value") == "dog"
    click_at(driver, x, y)
    wait_for(driver, MASK_SHOWN)
    keys(driver, "\ue007")  # Enter
    wait_for(driver, f"{STATE}.objects.length === 1 && {READY}")
    (saved,) = client.get(f"/api/images/{image_id}/annotations").json()
    assert saved["label"] == "dog"
    swatch = driver.execute_script(
        "return document.querySelector('#objects .swatch').style.background"
    )
    assert swatch == "rgb(0, 200, 0)"
    # The canvas: inside the object, the image blended half and half with the label's colour.
    inside = ndimage.binary_erosion(decode_coco_rle(saved["segmentation"]), iterations=2)
    ys, xs = np.nonzero(inside)
    pixels = list(zip(xs[:: max(1, xs.size // 20)], ys[:: max(1, xs.size // 20)], strict=True))
    wait_for(driver, f"{STATE}.objectMasks.size === 1")
    keys(driver, "h")  # hidden: the image alone
    image_rgb = canvas_colours(driver, pixels)[:, :3]
    keys(driver, "h")
    blend = 0.5 * image_rgb + 0.5 * np.array(GREEN)
    assert np.abs(canvas_colours(driver, pixels)[:, :3] - blend).max() <= 2
    assert client.get("/api/progress").json()["labels"] == {"cat": 0, "dog": 1}
    counts = driver.execute_script(
        "return [...document.querySelectorAll('#labels li .small')].map((e) => e.textContent)"
    )
    assert counts == ["0", "1"]


@needs_chromium
def test_done_filter_search_and_resume(session: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Image.fromarray(make_scene()[::-1].copy()).save(session["folder"] / "zebra.png")
    client, driver = client_of(session), session["driver"]
    driver.get(session["url"] + "/")
    wait_for(driver, f"{READY} && {STATE}.images.length === 2")
    assert listed(driver) == ["scene.png", "zebra.png"]
    keys(driver, "n")
    wait_for(driver, f"{STATE}.index === 1 && {READY}")
    keys(driver, "d")
    wait_for(driver, f"{STATE}.images[1].state === 'done'")
    done = client.get("/api/images?state=done").json()
    assert [im["file_name"] for im in done] == ["zebra.png"]
    counts = driver.find_element(By.ID, "progress-counts").text
    assert counts.startswith("1 done, 0 skipped, 0 in progress, 1 new of 2")
    Select(driver.find_element(By.ID, "state-filter")).select_by_value("done")
    assert listed(driver) == ["zebra.png"]
    Select(driver.find_element(By.ID, "state-filter")).select_by_value("new")
    assert listed(driver) == ["scene.png"]
    Select(driver.find_element(By.ID, "state-filter")).select_by_value("")
    driver.find_element(By.ID, "image-search").send_keys("ZEB")
    assert listed(driver) == ["zebra.png"]
    # Opened again without #id in the address: the image open last (localStorage).
    driver.get(session["url"] + "/")
    wait_for(driver, f"{READY} && {STATE}.info !== null")
    assert driver.execute_script(f"return {STATE}.info.file_name") == "zebra.png"
    assert listed(driver) == ["scene.png", "zebra.png"]  # the search is not kept
    # D again takes the mark off.
    keys(driver, "d")
    wait_for(driver, f"{STATE}.images[1].state === 'new'")
    assert client.get("/api/images?state=done").json() == []


def labels_shot(session: dict[str, Any]) -> None:
    """Labels box, disc and background; the scene with the box and the disc labelled, a second
    image with its box (done), a third skipped, a fourth new; key 2 chooses "disc"."""
    client, folder = client_of(session), session["folder"]
    for name, image in [("second.png", make_scene()[::-1]), ("third.png", make_scene()[:, ::-1])]:
        Image.fromarray(image.copy()).save(folder / name)
    Image.fromarray(make_scene()[::-1, ::-1].copy()).save(folder / "fourth.png")
    labels = [
        {"name": "box", "color": "#ffe119"},
        {"name": "disc", "color": "#3cb44b"},
        {"name": "background", "color": "#4363d8"},
    ]
    assert client.put("/api/labels", json={"labels": labels}).status_code == 200
    ids = {im["file_name"]: im["id"] for im in client.get("/api/images").json()}
    yy, xx = np.mgrid[:240, :320]
    disc = (yy - 120) ** 2 + (xx - 240) ** 2 < 50**2
    objects = [
        ("scene.png", "box", make_scene()[..., 0] > 200),
        ("scene.png", "disc", disc),
        ("second.png", "box", make_scene()[::-1][..., 0] > 200),
    ]
    for name, label, mask in objects:
        body = {"label": label, "segmentation": encode_coco_rle(mask)}
        assert client.post(f"/api/images/{ids[name]}/annotations", json=body).status_code == 201
    for name, state in [("second.png", "done"), ("third.png", "skipped")]:
        marked = client.put(f"/api/images/{ids[name]}/state", json={"state": state})
        assert marked.status_code == 200, marked.text
    driver = session["driver"]
    driver.get(f"{session['url']}/#{ids['scene.png']}")
    wait_for(driver, f"{READY} && {STATE}.objectMasks.size === 2")
    wait_for(driver, "document.querySelectorAll('#labels li').length === 3")
    keys(driver, "2")


def main() -> None:
    """Run the label set and progress session on samkit_default and save the screenshot."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("screenshot", help="e.g. docs/img/annotator_labels.png")
    ap.add_argument("--model", default="samkit_default", help="model name or weights file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, annotator(Path(tmp), args.model) as session:
        labels_shot(session)
        time.sleep(0.3)  # the canvas's next frame
        session["driver"].save_screenshot(str(Path(tmp) / "shot.png"))
        shutil.copy(Path(tmp) / "shot.png", args.screenshot)
    print(json.dumps({"screenshot": args.screenshot}))


if __name__ == "__main__":
    main()

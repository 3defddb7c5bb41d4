"""Importing annotations in real headless Chromium (issue 27): Import… posts a COCO file, the
status line reports what was imported and what was not, the label set gains the file's
categories, and the imported objects are drawn in their labels' colours; importing the file
again adds nothing, and a malformed file is said so.

`python tests/test_serve_browser_import.py docs/img/annotator_import.png` runs the same
session outside pytest and saves the screenshot of docs/annotator.md.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from browser_kit import annotator, canvas_colours, keys, needs_chromium, scene, wait_for
from scipy import ndimage

from samkit.rle import decode_coco_rle, encode_coco_rle

STATE = "window.samkit.state"
READY = "document.body.dataset.state === 'ready'"


def coco_file(path: Path) -> Path:
    """A COCO file for browser_kit's scene: its red box as a polygon (label "box"), its blue
    disc as an RLE ("disc"), and an object of an image the folder lacks."""
    disc = np.all(scene() == (30, 60, 220), axis=2)
    doc = {
        "images": [
            {"id": 1, "file_name": "scene.png", "width": 320, "height": 240},
            {"id": 2, "file_name": "elsewhere.png"},
        ],
        "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[40, 50, 150, 50, 150, 170, 40, 170]],
            },
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": encode_coco_rle(disc)},
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def import_file(driver: Any, path: Path, count: int) -> tuple[str, str]:
    """Pick `path` with Import…; returns the status line and the report under the button once
    the page has shown the answer (the `count`-th import of the page)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "import").send_keys(str(path))
    wait_for(driver, f"document.body.dataset.imports === '{count}'")
    return driver.find_element(By.ID, "status").text, driver.find_element(
        By.ID, "import-result"
    ).text


def import_and_look(session: dict[str, Any], coco: Path, shot: Path) -> dict[str, Any]:
    """Open the page, import the scene's COCO file (written to `coco`), save a screenshot;
    returns what the page shows."""
    driver = session["driver"]
    driver.get(session["url"] + "/")
    wait_for(driver, f"{READY} && {STATE}.info !== null")
    status, report = import_file(driver, coco_file(coco), 1)
    wait_for(driver, f"{READY} && {STATE}.objectMasks.size === 2")
    shown = driver.execute_script(
        f"const S = {STATE};"
        "const texts = (q) => [...document.querySelectorAll(q)].map((e) => e.textContent);"
        "return {objects: S.objects.map((o) => [o.label, o.source, o.area]),"
        " labels: texts('#labels li .grow'), counts: texts('#labels li .small'),"
        " images: texts('#images li .small'), sources: document.body.dataset.sources}"
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    return {"status": status, "report": report, **shown}


@needs_chromium
def test_import_draws_the_objects_and_reports(session: dict[str, Any], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    driver = session["driver"]
    seen = import_and_look(session, tmp_path / "instances.json", tmp_path / "shot.png")
    assert seen["status"] == (
        "imported 2 object(s) on 1 image(s) from instances.json, 0 duplicate(s) skipped, "
        "1 not imported"
    )
    assert seen["report"] == (
        "Labels added: box, disc. Not imported: elsewhere.png #3: unknown image: the folder "
        "has no image named 'elsewhere.png'."
    )
    assert seen["objects"] == [
        ["box", "imported", 110 * 120],
        ["disc", "imported", seen["objects"][1][2]],
    ]
    assert seen["labels"] == ["1 box", "2 disc"] and seen["counts"] == ["1", "1"]
    assert seen["images"] == ["2 in progress"]
    assert json.loads(seen["sources"])["image"]["imported"] == 2
    # Drawn: inside each object, the image blended half and half with its label's colour.
    client = TestClient(session["app"], base_url="http://127.0.0.1")
    colours = {x["name"]: x["color"] for x in client.get("/api/labels").json()}
    image_id = client.get("/api/images").json()[0]["id"]
    keys(driver, "h")  # the objects hidden: the image alone
    for ann in client.get(f"/api/images/{image_id}/annotations").json():
        inside = ndimage.binary_erosion(decode_coco_rle(ann["segmentation"]), iterations=2)
        ys, xs = np.nonzero(inside)
        step = max(1, xs.size // 20)
        pixels = list(zip(xs[::step], ys[::step], strict=True))
        image_rgb = canvas_colours(driver, pixels)[:, :3]
        keys(driver, "h")
        rgb = np.array([int(colours[ann["label"]][i : i + 2], 16) for i in (1, 3, 5)])
        assert np.abs(canvas_colours(driver, pixels)[:, :3] - (image_rgb + rgb) / 2).max() <= 2
        keys(driver, "h")
    # The same file again: nothing new. A file that is not JSON: said so, nothing changes.
    again, report = import_file(driver, tmp_path / "instances.json", 2)
    assert again == (
        "imported 0 object(s) on 0 image(s) from instances.json, 2 duplicate(s) skipped, "
        "1 not imported"
    )
    assert report.startswith("Not imported: elsewhere.png #3")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    said, _ = import_file(driver, bad, 3)
    assert said.startswith("import of bad.json: the request body is not valid JSON")
    assert driver.execute_script("return document.body.dataset.state") == "error"
    assert driver.execute_script(f"return {STATE}.objects.length") == 2
    assert len(client.get(f"/api/images/{image_id}/annotations").json()) == 2


def main() -> None:
    """Run the session outside pytest and save the screenshot."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("screenshot", nargs="?", default="docs/img/annotator_import.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, annotator(Path(tmp)) as state:
        shot = Path(args.screenshot).resolve()
        seen = import_and_look(state, Path(tmp) / "instances.json", shot)
    print(
        json.dumps(
            {"screenshot": args.screenshot, "status": seen["status"], "report": seen["report"]}
        )
    )


if __name__ == "__main__":
    main()

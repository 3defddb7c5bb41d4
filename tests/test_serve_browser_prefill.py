"""The page's semi-automatic stage in headless Chromium: pre-fill (G), accept all, click one
more object, and the masks per stage the page shows; segment everything's progress and Cancel.

`python tests/test_serve_browser_prefill.py docs/img/annotator_prefill.png --shot prefill` (or
`docs/img/annotator_everything.png --shot everything`) runs that session on samkit_default and
saves the screenshot for docs/annotator.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from browser_kit import MASK_SHOWN, annotator, click_at, keys, needs_chromium, scene, wait_for
from PIL import Image

from samkit.rle import encode_coco_rle

READY = "document.body.dataset.state === 'ready'"
STATE = "window.samkit.state"
STATUS = "document.getElementById('status').textContent"


@needs_chromium
def test_prefill_accept_all_then_click(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    # samkit_default is trained: on the scene the AMG defaults keep the box and the disc.
    with annotator(tmp_path, model="samkit_default") as session:
        driver, state = session["driver"], "window.samkit.state"
        driver.get(session["url"] + "/")
        wait_for(driver, READY)
        keys(driver, "g")
        wait_for(driver, f"{state}.proposals.length > 0 && {READY}")
        proposed = driver.execute_script(f"return {state}.proposals.length")
        driver.find_element(By.ID, "accept-all").click()
        wait_for(driver, f"{state}.objects.length === {proposed} && {state}.proposals.length === 0")
        click_at(driver, 10, 10)  # the background: not proposed
        wait_for(driver, MASK_SHOWN)
        keys(driver, "\n")
        wait_for(
            driver, f"{state}.objects.length === {proposed + 1} && window.samkit.inFlight() === 0"
        )
        counts: dict[str, Any] = json.loads(
            driver.execute_script("return document.body.dataset.sources")
        )
        assert counts["image"] == {"manual": 1, "text": 0, "proposal": proposed}
        assert counts["project"] == counts["image"]  # one image
        shown = driver.find_element(By.ID, "sources-image").text
        assert shown == f"this image: manual 1 · text 0 · proposal {proposed}"
        stored = [
            a["source"]
            for a in json.loads(
                next((session["folder"] / ".samkit" / "annotations").glob("*.json")).read_text()
            )["annotations"]
        ]
        assert stored == ["proposal"] * proposed + ["manual"]


@contextmanager
def held_everything(app: Any, batches: int) -> Iterator[dict[str, Any]]:
    """Segment everything held before its batch `batches + 1` of points (a slow model) until
    `release` is set; `calls` counts the batches that reached the model's decoder."""
    decoder = app.state.engine.model.mask_decoder
    confident = decoder.predict_confident  # segment everything's decoder call, once a batch
    gate: dict[str, Any] = {"release": threading.Event(), "calls": 0}

    def slow(*args: Any, **kwargs: Any) -> Any:
        gate["calls"] += 1
        if gate["calls"] > batches:
            gate["release"].wait(60)
        return confident(*args, **kwargs)

    decoder.predict_confident = slow  # the real decoder answers, later
    try:
        yield gate
    finally:
        gate["release"].set()
        delattr(decoder, "predict_confident")


def start_everything(session: dict[str, Any], points_per_side: int) -> Any:
    """The page ready, then E with `points_per_side` in the settings panel (open)."""
    driver = session["driver"]
    driver.get(session["url"] + "/")
    wait_for(driver, READY)
    driver.execute_script(
        "document.getElementById('amg-settings').open = true;"
        "document.getElementById('amg-points').value = arguments[0];",
        points_per_side,
    )
    keys(driver, "e")
    return driver


@needs_chromium
def test_segment_everything_shows_its_progress_and_cancels(tmp_path: Path) -> None:
    """Held after 2 of its 4 batches (16 x 16 points, 64 a batch), the job's progress is on the
    status line with the cancel button; cancel stops it at the next batch: no proposals."""
    from selenium.webdriver.common.by import By

    with (
        annotator(tmp_path, model="samkit_default") as session,
        held_everything(session["app"], 2) as gate,
    ):
        driver = start_everything(session, 16)
        wait_for(driver, f"{STATUS} === 'segmenting everything: 128 / 256 points'")
        cancel = driver.find_element(By.ID, "cancel-everything")
        assert cancel.is_displayed()
        cancel.click()
        gate["release"].set()
        wait_for(driver, f"{READY} && {STATUS} === 'segment everything cancelled'")
        assert not cancel.is_displayed()
        assert driver.execute_script(f"return {STATE}.proposals.length") == 0
        assert gate["calls"] == 3  # the batch held ran; the next one was not started


def prefill_shot(session: dict[str, Any]) -> None:
    """Another image with a manual and a text object; on the scene, pre-fill and accept the
    last proposal (✓): one proposal left, the counts per stage of the image and the project."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By

    Image.fromarray(scene()[::-1].copy()).save(session["folder"] / "second.png")
    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    second = next(im for im in client.get("/api/images").json() if im["file_name"] == "second.png")
    box = scene()[::-1].copy()[..., 0] > 200  # the red box, upside down
    for source in ("manual", "text"):
        body = {"label": "box", "segmentation": encode_coco_rle(box), "source": source}
        assert client.post(f"/api/images/{second['id']}/annotations", json=body).status_code == 201
    driver = session["driver"]
    driver.get(session["url"] + "/")
    wait_for(driver, f"{READY} && {STATE}.info.file_name === 'scene.png'")
    keys(driver, "g")
    wait_for(driver, f"{STATE}.proposals.length > 1 && {READY}")
    accept = "#proposal-list li:last-child button[title='accept with the label']"
    driver.find_element(By.CSS_SELECTOR, accept).click()
    wait_for(driver, f"{STATE}.objects.length === 1 && window.samkit.inFlight() === 0")


def main() -> None:
    """Run the pre-fill session (or segment everything held half way) on samkit_default and
    save the screenshot."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("screenshot", help="e.g. docs/img/annotator_prefill.png")
    ap.add_argument("--shot", choices=["prefill", "everything"], required=True)
    ap.add_argument("--model", default="samkit_default", help="model name or weights file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, annotator(Path(tmp), args.model) as session:
        driver, shot = session["driver"], str(Path(tmp) / "shot.png")
        if args.shot == "prefill":
            prefill_shot(session)
            time.sleep(0.3)  # the canvas's next frame
            driver.save_screenshot(shot)
        else:  # 32 x 32 points, held after 8 of the 16 batches
            with held_everything(session["app"], 8) as gate:
                start_everything(session, 32)
                wait_for(driver, f"{STATUS} === 'segmenting everything: 512 / 1024 points'")
                driver.save_screenshot(shot)
                keys(driver, "\ue00c")  # Esc: cancel
                gate["release"].set()
                wait_for(driver, READY)
        shutil.copy(Path(tmp) / "shot.png", args.screenshot)
    print(json.dumps({"screenshot": args.screenshot}))


if __name__ == "__main__":
    main()

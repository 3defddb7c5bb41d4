"""The annotator's hover preview in real headless Chromium (issue 27): the mask under the
mouse drawn without a click, one request at a time, stale answers dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from browser_kit import keys, needs_chromium, scene, until, wait_for
from PIL import Image
from scipy import ndimage
from test_serve_browser_edit import READY, STATE, hover, open_page, overlay_rgba

from samkit.rle import decode_coco_rle


@contextmanager
def held_predictions(app: Any) -> Iterator[dict[str, Any]]:
    """Hold the server's predictions until `release` is set (a slow model); counts them and
    the most that ran at once."""
    engine = app.state.engine
    predict = engine.predict
    gate = {"release": threading.Event(), "calls": [], "running": 0, "most": 0}
    lock = threading.Lock()

    def slow(*args: Any, **kwargs: Any) -> Any:
        with lock:
            gate["calls"].append(kwargs["point_coords"].tolist())
            gate["running"] += 1
            gate["most"] = max(gate["most"], gate["running"])
        gate["release"].wait(30)
        try:
            return predict(*args, **kwargs)
        finally:
            with lock:
                gate["running"] -= 1

    engine.predict = slow
    try:
        yield gate
    finally:
        gate["release"].set()
        engine.predict = predict


@needs_chromium
def test_hover_preview_draws_a_mask_without_a_click(session: dict[str, Any]) -> None:
    """M, then the mouse over the disc: the mask a click there gives is drawn faintly on the
    overlay; no prompt, no candidate, nothing to undo."""
    from selenium.webdriver.common.by import By

    driver, client, image_id = open_page(session)
    keys(driver, "m")
    assert driver.find_element(By.ID, "hover").get_attribute("aria-pressed") == "true"
    hover(driver, 240.5, 120.5)
    wait_for(driver, "window.samkit.hover.mask !== null")
    point = driver.execute_script("return window.samkit.hover.point")
    url = f"/api/images/{image_id}/predict"
    answer = client.post(url, json={"points": [point], "labels": [1]}).json()
    best = decode_coco_rle(answer["masks"][answer["best"]]["segmentation"])
    assert driver.execute_script("return window.samkit.hover.mask.area") == int(best.sum())
    depth = ndimage.distance_transform_edt(np.pad(best, 1))[1:-1, 1:-1]  # the edge is out
    y, x = np.unravel_index(np.argmax(depth), best.shape)  # the pixel deepest inside
    until(lambda: overlay_rgba(driver, x + 0.5, y + 0.5)[3])  # drawn at the next frame
    rgba = np.array(overlay_rgba(driver, x + 0.5, y + 0.5))
    assert np.abs(rgba[:3] - [255, 220, 0]).max() <= 2 and 0 < rgba[3] < 128  # faint yellow
    untouched = "S.result === null && !S.prompt.points.length && !S.history.length"
    assert driver.execute_script(f"const S = {STATE}; return {untouched}")


@needs_chromium
def test_a_stale_hover_answer_is_dropped(session: dict[str, Any]) -> None:
    """The answer for the mouse's first point comes late, after it moved on: it is left out,
    the newest point is asked for next (one request at a time) and its mask is drawn; an
    answer that comes after another image was opened is left out too."""
    Image.fromarray(scene()[::-1]).save(session["folder"] / "second.png")
    driver, _, _ = open_page(session)
    keys(driver, "m")
    with held_predictions(session["app"]) as gate:
        hover(driver, 95.5, 110.5)
        until(lambda: len(gate["calls"]) == 1)
        hover(driver, 240.5, 120.5)  # moved on while the first is held
        time.sleep(0.4)  # more than the 150 ms between requests: none is sent while one waits
        assert len(gate["calls"]) == 1
        gate["release"].set()
        wait_for(driver, "window.samkit.hover.mask !== null")
    assert gate["most"] == 1 and len(gate["calls"]) == 2
    assert driver.execute_script("return window.samkit.hover.dropped") == 1
    assert np.allclose(gate["calls"][1], [[240.5, 120.5]], atol=0.5)
    assert np.allclose(
        driver.execute_script("return window.samkit.hover.point"), [240.5, 120.5], atol=0.5
    )

    with held_predictions(session["app"]) as gate:
        hover(driver, 95.5, 110.5)
        until(lambda: len(gate["calls"]) == 1)
        keys(driver, "n")  # another image while the answer is held
        wait_for(driver, f"{STATE}.index === 1 && {READY}")
        gate["release"].set()
        wait_for(driver, "window.samkit.hover.dropped === 2")
    assert driver.execute_script("return window.samkit.hover.mask") is None

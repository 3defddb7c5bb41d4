"""The annotator's browser tests' kit: a scene, the app on it with headless Chromium, and
the page's input (clicks at image pixels, keys, a phrase in the text box)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import load
from samkit.build import build_samkit_tiny, seeded_init_
from samkit.checkpoints import write_safetensors
from samkit.rle import decode_coco_rle
from samkit.serve import background, create_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def scene(height: int = 240, width: int = 320) -> np.ndarray:
    """A noisy background with a red rectangle and a blue disc."""
    rng = np.random.default_rng(1)
    img = rng.integers(90, 160, size=(height, width, 3), dtype=np.uint8)
    img[50:170, 40:150] = (220, 30, 30)
    yy, xx = np.mgrid[:height, :width]
    img[(yy - 120) ** 2 + (xx - 240) ** 2 < 50**2] = (30, 60, 220)
    return img


def chrome(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver: Any, script: str, timeout: float = 60.0) -> Any:
    """Poll until the JavaScript expression `script` is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"return {script}")
    )


def pick_point(client: Any, image_id: str) -> tuple[int, int]:
    """A point on the red rectangle whose best mask (seeded model) contains it, if any."""
    for x, y in [(95, 110), (70, 80), (120, 140), (60, 150), (130, 60)]:
        r = client.post(f"/api/images/{image_id}/predict", json={"points": [[x, y]], "labels": [1]})
        best = r.json()["masks"][r.json()["best"]]
        mask = decode_coco_rle(best["segmentation"])
        if mask[y, x] and best["area"] < mask.size * 0.9:
            return x, y
    return 95, 110


@contextmanager
def annotator(tmp_path: Path, model: str = "samkit_tiny") -> Iterator[dict[str, Any]]:
    """A folder with one scene, the app on it served on 127.0.0.1, and a browser."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(scene()).save(folder / "scene.png")
    sam = seeded_init_(build_samkit_tiny(), seed=0) if model == "samkit_tiny" else load(model)
    app = create_app(folder, sam, model_name=model)
    with background(app) as url:
        driver = chrome(tmp_path / "profile")
        try:
            yield {"url": url, "folder": folder, "app": app, "driver": driver}
        finally:
            driver.quit()


def click_at(driver: Any, x: float, y: float, *, right: bool = False) -> None:
    """Click image pixel (x, y) of the page's canvas (320 px wide image)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "canvas")
    scale = canvas.size["width"] / 320
    chain = ActionChains(driver).move_to_element_with_offset(  # offsets from the centre
        canvas,
        int((x + 0.5) * scale - canvas.size["width"] / 2),
        int((y + 0.5) * scale - canvas.size["height"] / 2),
    )
    (chain.context_click() if right else chain.click()).perform()


def keys(driver: Any, *sequence: str, shift: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chain = ActionChains(driver)
    if shift:
        chain = chain.key_down(Keys.SHIFT)
    chain = chain.send_keys(*sequence)
    if shift:
        chain = chain.key_up(Keys.SHIFT)
    chain.perform()


MASK_SHOWN = "window.samkit.state.result && document.body.dataset.state === 'ready'"


def text_model(folder: Path) -> str:
    """samkit_default with a fresh (untrained, seeded) text head, as a weights file whose
    metadata names its text encoder, as trained ones ship; `load` gives it the head back."""
    model = load("samkit_default")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.prompt_encoder.enable_text(384)
    path = folder / "samkit_default_text.safetensors"
    metadata = {"samkit_variant": "samkit_default", "samkit_text_encoder": "minilm"}
    write_safetensors(model.state_dict(), path, metadata=metadata)
    return str(path)


def segment_by_text(session: dict[str, Any], phrase: str, point: tuple[int, int]) -> dict[str, Any]:
    """Type `phrase` in the text box, press Enter, then click `point` to refine its mask."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, state = session["driver"], "window.samkit.state"
    driver.get(session["url"] + "/")
    ready = "document.body.dataset.state === 'ready'"
    wait_for(driver, f"{ready} && !document.getElementById('text-box').hidden")
    box = driver.find_element(By.ID, "text")
    box.click()
    box.send_keys(phrase)  # no shortcut may fire while typing ("t", "h", "e", "n", ...)
    typed = driver.execute_script(
        f"return [{state}.hideAll, {state}.proposals.length, document.body.dataset.state]"
    )
    box.send_keys(Keys.ENTER)  # the box's Enter segments (the page's Enter accepts)
    wait_for(driver, f"{state}.prompt.text === {json.dumps(phrase)} && {MASK_SHOWN}")
    first = driver.execute_script(
        f"return {{result: {state}.result, area: window.samkit.shownArea(),"
        " focused: document.activeElement.id, status: document.getElementById('status').innerText}"
    )
    click_at(driver, *point)
    wait_for(driver, f"{state}.prompt.points.length === 1 && {MASK_SHOWN}")
    second = driver.execute_script(
        f"return {{result: {state}.result, prompt: {state}.prompt,"
        " box: document.getElementById('text').value}"
    )
    return {"typed": typed, "first": first, "second": second}


# -- the view: input at image points whatever the zoom and pan, and what the canvas shows --


def viewport_point(driver: Any, x: float, y: float) -> tuple[int, int]:
    """The viewport pixel (rounded) that shows image point (x, y) at the page's zoom and pan."""
    vx, vy = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect();"
        "const [cx, cy] = window.samkit.toCanvas([arguments[0], arguments[1]]);"
        "return [Math.round(r.left + cx), Math.round(r.top + cy)];",
        x,
        y,
    )
    return int(vx), int(vy)


def click_image(driver: Any, x: float, y: float, *, right: bool = False) -> None:
    """Click (or right-click) where image point (x, y) is shown now."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(*viewport_point(driver, x, y))
    if right:
        actions.pointer_action.context_click()
    else:
        actions.pointer_action.click()
    actions.perform()


def drag(
    driver: Any,
    start: tuple[int, int],
    end: tuple[int, int],
    *,
    button: int = 0,
    hold: str | None = None,
) -> None:
    """Press mouse `button` (0 left, 1 middle) at viewport pixel `start`, move to `end` in 4
    steps and let go; with the key `hold` (" " for Space) held down throughout."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    pointer, key = actions.pointer_action, actions.key_action
    if hold:
        key.key_down(hold)
        pointer.pause(0)
    moves = [
        (start[0] + (end[0] - start[0]) * i // 4, start[1] + (end[1] - start[1]) * i // 4)
        for i in range(5)
    ]
    pointer.move_to_location(*moves[0])
    pointer.pointer_down(button)
    for point in moves[1:]:
        pointer.move_to_location(*point)
    pointer.pointer_up(button)
    for _ in range(len(moves) + 2):  # the key stays down while the pointer acts
        key.pause(0)
    if hold:
        key.key_up(hold)
    actions.perform()


def wheel(driver: Any, at: tuple[int, int], dy: int) -> None:
    """Turn the mouse wheel by `dy` pixels (negative: up) over viewport pixel `at`."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_viewport(*at), 0, dy).perform()


def canvas_colours(driver: Any, pixels: list[tuple[int, int]]) -> np.ndarray:
    """(N, 4) RGBA on the canvas at the centre of each image pixel (x, y) as shown now."""
    rgba = driver.execute_script(
        "const ctx = document.getElementById('canvas').getContext('2d');"
        "return arguments[0].map(([x, y]) => {"
        "  const [cx, cy] = window.samkit.toCanvas([x + 0.5, y + 0.5]);"
        "  return [...ctx.getImageData(Math.floor(cx), Math.floor(cy), 1, 1).data];"
        "});",
        [list(map(int, p)) for p in pixels],
    )
    return np.array(rgba, dtype=np.int32).reshape(-1, 4)


# -- the server's side of a browser test, and undo/redo -------------------------------------


def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check()` (the server's state) until it is truthy; returns it."""
    end = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < end, "the server never reached the state the test waits for"
        time.sleep(0.05)
    return value


def server_state(client: Any, image_id: str) -> list[tuple[str, str, str, int]]:
    """The image's annotations without their ids: (label, mask counts, source, area)."""
    stored = client.get(f"/api/images/{image_id}/annotations").json()
    return sorted((a["label"], a["segmentation"]["counts"], a["source"], a["area"]) for a in stored)


def ctrl_z(driver: Any, *, shift: bool = False) -> None:
    """Ctrl+Z (undo), or Ctrl+Shift+Z (redo)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chain = ActionChains(driver).key_down(Keys.CONTROL)
    chain = chain.key_down(Keys.SHIFT) if shift else chain
    chain = chain.send_keys("z")
    chain = chain.key_up(Keys.SHIFT) if shift else chain
    chain.key_up(Keys.CONTROL).perform()

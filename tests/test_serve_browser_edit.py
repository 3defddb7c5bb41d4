"""The annotator's mask editing in real headless Chromium (issue 27): brush and eraser on the
candidate and on an accepted object, the edited mask fed back on the next click, the polygon
view, and undo and redo over clicks, accepts, edits and deletes (the hover preview:
test_serve_browser_hover.py).

`python tests/test_serve_browser_edit.py docs/img/annotator_brush.png --tool brush` (or
`--tool polygon`, `--tool hover`) runs the tool's session on samkit_default and saves the
screenshot for docs/annotator.md.
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
    click_image,
    ctrl_z,
    drag,
    keys,
    needs_chromium,
    pick_point,
    server_state,
    until,
    viewport_point,
    wait_for,
)

from samkit.rle import decode_coco_rle, encode_coco_rle

STATE = "window.samkit.state"
READY = "document.body.dataset.state === 'ready'"
H, W = 240, 320  # the scene


def open_page(session: dict[str, Any], objects: int = 0) -> tuple[Any, Any, str]:
    """The page on the scene, ready, with `objects` accepted objects loaded; the driver, an
    API client and the image's id."""
    from fastapi.testclient import TestClient

    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    session["driver"].get(session["url"] + "/")
    wait_for(session["driver"], f"{READY} && {STATE}.objects.length === {objects}")
    return session["driver"], client, image_id


def add_object(client: Any, image_id: str, mask: np.ndarray, label: str = "box") -> dict[str, Any]:
    url = f"/api/images/{image_id}/annotations"
    made = client.post(url, json={"label": label, "segmentation": encode_coco_rle(mask)})
    assert made.status_code == 201, made.text
    return dict(made.json())


def stored(client: Any, image_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/images/{image_id}/annotations").json())


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def image_at(driver: Any, viewport: tuple[int, int]) -> np.ndarray:
    """The image point (X, Y) under viewport pixel `viewport` (view.js's mapping inverted)."""
    return np.array(
        driver.execute_script(
            "const c = document.getElementById('canvas'), r = c.getBoundingClientRect();"
            "const V = window.samkit.view;"
            "return [V.x + (arguments[0] - r.left) * c.width / r.width / V.scale,"
            "        V.y + (arguments[1] - r.top) * c.height / r.height / V.scale];",
            *viewport,
        )
    )


def stroke(driver: Any, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Drag from image point `a` to `b` (as shown now); returns each pixel's distance to the
    segment the mouse went along, in image pixels."""
    start, end = viewport_point(driver, *a), viewport_point(driver, *b)
    drag(driver, start, end)
    p, q = image_at(driver, start), image_at(driver, end)
    ys, xs = np.mgrid[:H, :W]
    centres = np.stack([xs + 0.5, ys + 0.5], axis=-1) - p
    d = q - p
    t = np.clip((centres @ d) / max(float(d @ d), 1e-9), 0, 1)
    return np.asarray(np.hypot(*np.moveaxis(centres - t[..., None] * d, -1, 0)))


def shift_click(driver: Any, x: float, y: float) -> None:
    from selenium.webdriver.common.keys import Keys

    at = viewport_point(driver, x, y)
    drag(driver, at, at, hold=Keys.SHIFT)


def shown_mask(driver: Any) -> np.ndarray:
    rle = driver.execute_script(
        f"const S = {STATE}; return S.result.masks[S.selected].segmentation"
    )
    return decode_coco_rle(rle)


def radius(driver: Any) -> float:
    return float(driver.execute_script("return window.samkit.edit.radius"))


def overlay_rgba(driver: Any, x: float, y: float) -> list[int]:
    """The overlay's pixel over image point (x, y)."""
    return list(
        driver.execute_script(
            "const [cx, cy] = window.samkit.toCanvas([arguments[0], arguments[1]]);"
            "const ctx = document.getElementById('overlay').getContext('2d');"
            "return [...ctx.getImageData(Math.floor(cx), Math.floor(cy), 1, 1).data];",
            x,
            y,
        )
    )


def brush_candidate(session: dict[str, Any]) -> dict[str, Any]:
    """Click the red box, zoom in (+), paint a stroke with the brush (B) next to the mask."""
    driver, client, image_id = open_page(session)
    x, y = pick_point(client, image_id)
    click_image(driver, x + 0.5, y + 0.5)
    wait_for(driver, MASK_SHOWN)
    before = shown_mask(driver)
    keys(driver, "+", "b")
    assert driver.execute_script("return window.samkit.edit.tool") == "brush"
    # Of two strokes, under the box and over it, the one over more pixels off the mask.
    options = [((60.0, 175.0), (130.0, 190.0)), ((60.0, 45.0), (140.0, 45.0))]
    a, b = max(options, key=lambda ab: off_mask(before, *ab))
    distance = stroke(driver, a, b)
    wait_for(driver, f"{STATE}.history.length === 2")  # the click, the stroke
    return {"client": client, "image_id": image_id, "before": before, "distance": distance}


def off_mask(mask: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> int:
    """Pixels of the box spanned by points a and b that are not in `mask`."""
    (x0, y0), (x1, y1) = a, b
    return int((~mask[int(min(y0, y1)) : int(max(y0, y1)) + 1, int(x0) : int(x1) + 1]).sum())


@needs_chromium
def test_the_brush_adds_to_the_candidate_and_accept_saves_it(session: dict[str, Any]) -> None:
    """At zoom 1.5, a brush stroke sets the pixels within the radius of the mouse's path (at
    the image's resolution) and no others; the candidate is marked edited, and Enter saves
    the painted mask, larger, with source "edited"."""
    from selenium.webdriver.common.keys import Keys

    out = brush_candidate(session)
    driver, client, image_id = session["driver"], out["client"], out["image_id"]
    before, distance, r = out["before"], out["distance"], radius(session["driver"])
    after = shown_mask(driver)
    assert (after >= before).all()  # the brush only adds
    assert after[distance <= r - 1].all()  # all within the radius of the path
    assert np.array_equal(after[distance > r + 1], before[distance > r + 1])  # and no further
    assert int((after & ~before).sum()) > 100
    assert driver.execute_script(f"const S = {STATE}; return S.result.masks[S.selected].edited")
    assert driver.execute_script("return window.samkit.shownArea()") == int(after.sum())

    keys(driver, Keys.ENTER)
    (saved,) = until(lambda: stored(client, image_id))
    assert saved["source"] == "edited" and saved["area"] == int(after.sum()) > int(before.sum())
    assert np.array_equal(decode_coco_rle(saved["segmentation"]), after)


@needs_chromium
def test_the_eraser_edits_an_accepted_object(session: dict[str, Any]) -> None:
    """Shift+click selects the object, X and a drag across it erase a band; the object's new
    mask is saved with PATCH and its source becomes "edited"."""
    from fastapi.testclient import TestClient

    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    box = rect(50, 170, 40, 150)
    made = add_object(client, image_id, box)
    driver, _, _ = open_page(session, objects=1)
    shift_click(driver, 95, 110)
    wait_for(driver, f"{STATE}.editing === {made['id']}")
    assert "editing" in driver.execute_script(
        "return document.querySelector('#objects li').className"
    )
    keys(driver, "x")
    distance = stroke(driver, (20.0, 110.0), (170.0, 112.0))
    (edited,) = until(lambda: [a for a in stored(client, image_id) if a["source"] == "edited"])
    r = radius(driver)
    mask = decode_coco_rle(edited["segmentation"])
    assert not mask[distance <= r - 1].any()
    assert np.array_equal(mask[distance > r + 1], box[distance > r + 1])
    assert edited["area"] == int(mask.sum()) < made["area"] and edited["id"] == made["id"]
    wait_for(driver, f"{STATE}.objects[0].source === 'edited'")


@needs_chromium
def test_the_next_click_after_brushing_sends_the_edited_mask(session: dict[str, Any]) -> None:
    """The server's engine is asked with the painted mask (the whole image's, as painted)
    instead of the previous logits' token; a click after that sends the token again."""
    engine = session["app"].state.engine
    asked: list[dict[str, Any]] = []
    predict = engine.predict

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append({"mask": kwargs.get("mask"), "mask_from": kwargs.get("mask_from")})
        return predict(*args, **kwargs)

    engine.predict = spy  # the real engine answers; the test reads what it was asked
    brush_candidate(session)
    driver = session["driver"]
    painted = shown_mask(driver)
    keys(driver, "b", "0")  # the brush off (a click is a point again), the whole image
    click_image(driver, 30, 220, right=True)  # a negative point on the background
    wait_for(driver, f"{STATE}.prompt.points.length === 2 && {MASK_SHOWN}")
    click_image(driver, 100, 100)
    wait_for(driver, f"{STATE}.prompt.points.length === 3 && {MASK_SHOWN}")
    pages = asked[-3:]  # pick_point asked some before the page did
    assert pages[0]["mask"] is None and pages[0]["mask_from"] is None  # the first click
    assert pages[1]["mask_from"] is None and np.array_equal(pages[1]["mask"], painted)
    assert pages[2]["mask"] is None and pages[2]["mask_from"] is not None


@needs_chromium
def test_polygon_view_draws_each_part_and_its_holes(session: dict[str, Any]) -> None:
    """A click on the object's row selects it; V draws 2 polygons for a mask of 2 parts, the
    frame's hole dashed: vertices at the corners' pixel centres, read back from the overlay."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    two = (rect(40, 120, 30, 130) & ~rect(60, 100, 50, 110)) | rect(150, 210, 200, 290)
    made = add_object(client, image_id, two, label="two")
    driver, _, _ = open_page(session, objects=1)
    driver.find_element(By.CSS_SELECTOR, "#objects li .grow").click()
    wait_for(driver, f"{STATE}.editing === {made['id']}")
    keys(driver, "v")
    wait_for(driver, "window.samkit.polygons.polygons.length > 0")
    polygons = driver.execute_script("return window.samkit.polygons.polygons")
    assert len(polygons) == 2
    assert sorted(len(p["holes"]) for p in polygons) == [0, 1]
    assert "2 polygon(s), 1 hole(s)" in driver.find_element(By.ID, "status").text
    white, orange = [255, 255, 255, 255], [255, 133, 27, 255]
    until(lambda: overlay_rgba(driver, 30.5, 40.5) == white)  # drawn at the next frame
    for x, y in [(30, 40), (129, 119), (200, 150), (289, 209)]:  # exterior corners
        assert overlay_rgba(driver, x + 0.5, y + 0.5) == white, (x, y)
    for x, y in [(49, 59), (110, 100)]:  # the hole's ring runs on the frame's pixels
        assert overlay_rgba(driver, x + 0.5, y + 0.5) == orange, (x, y)
    assert overlay_rgba(driver, 80.5, 80.5)[3] == 0  # inside the hole: nothing drawn
    keys(driver, Keys.ESCAPE)  # unselect: the polygons go
    wait_for(driver, f"{STATE}.editing === null && window.samkit.polygons.polygons.length === 0")
    until(lambda: overlay_rgba(driver, 30.5, 40.5)[3] == 0)


@needs_chromium
def test_undo_and_redo_restore_the_server_state(session: dict[str, Any]) -> None:
    """Ctrl+Z and Ctrl+Shift+Z over a click (the candidate), an accept (the annotation goes and
    comes back), an eraser stroke (the mask and source as before) and a delete (made again
    with its mask, label and source); then undoing through the re-made object's new id."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, client, image_id = open_page(session)
    x, y = pick_point(client, image_id)
    click_image(driver, x + 0.5, y + 0.5)
    wait_for(driver, MASK_SHOWN)
    mask = shown_mask(driver)
    ctrl_z(driver)  # the click
    wait_for(driver, f"{STATE}.result === null && {STATE}.prompt.points.length === 0")
    ctrl_z(driver, shift=True)
    wait_for(driver, f"{STATE}.result !== null && {STATE}.prompt.points.length === 1")
    assert np.array_equal(shown_mask(driver), mask)

    keys(driver, Keys.ENTER)  # accept
    accepted = until(lambda: server_state(client, image_id))
    assert [a[2] for a in accepted] == ["manual"]
    ctrl_z(driver)
    until(lambda: server_state(client, image_id) == [])
    wait_for(driver, f"{STATE}.result !== null && {STATE}.objects.length === 0")  # shown again
    ctrl_z(driver, shift=True)
    until(lambda: server_state(client, image_id) == accepted)
    wait_for(driver, f"{STATE}.result === null && {STATE}.objects.length === 1")

    ys, xs = np.nonzero(mask)
    i = len(xs) // 2
    shift_click(driver, xs[i] + 0.5, ys[i] + 0.5)
    wait_for(driver, f"{STATE}.editing !== null")
    keys(driver, "x")
    stroke(driver, (2.0, ys[i] + 0.5), (W - 2.0, ys[i] + 0.5))  # across the image
    edited = until(lambda: [a for a in server_state(client, image_id) if a[2] == "edited"])
    assert edited[0][3] < accepted[0][3]
    ctrl_z(driver)
    until(lambda: server_state(client, image_id) == accepted)
    ctrl_z(driver, shift=True)
    until(lambda: server_state(client, image_id) == edited)

    keys(driver, "x")  # the eraser off
    wait_for(driver, f"{STATE}.objects[0]?.source === 'edited'")  # the list shows the redo
    driver.find_element(By.CSS_SELECTOR, "#objects li button[title='delete this object']").click()
    driver.switch_to.alert.accept()
    until(lambda: server_state(client, image_id) == [])
    ctrl_z(driver)  # made again, with a new id
    until(lambda: server_state(client, image_id) == edited)
    ctrl_z(driver, shift=True)
    until(lambda: server_state(client, image_id) == [])
    ctrl_z(driver)
    ctrl_z(driver)  # the stroke, on the object made again
    until(lambda: server_state(client, image_id) == accepted)
    # Done: the click and the accept; undone: the stroke and the delete.
    wait_for(driver, f"{STATE}.history.length === 2 && {STATE}.future.length === 2")


def hover(driver: Any, x: float, y: float) -> None:
    """Move the mouse over image point (x, y), without a click."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(*viewport_point(driver, x, y))
    actions.perform()


def main() -> None:
    """Run one tool's session on samkit_default and save the screenshot."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("screenshot", help="e.g. docs/img/annotator_brush.png")
    ap.add_argument("--tool", choices=["brush", "polygon", "hover"], required=True)
    ap.add_argument("--model", default="samkit_default", help="model name or weights file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, annotator(Path(tmp), args.model) as session:
        driver = session["driver"]
        if args.tool == "brush":  # a click on the box, and a stroke added to its mask
            brush_candidate(session)
            hover(driver, 150, 120)  # the brush's circle
        elif args.tool == "polygon":  # one object of 2 parts: the box (a hole in it), the disc
            _, client, image_id = open_page(session)
            box = rect(50, 170, 40, 150) & ~rect(90, 120, 80, 110)
            yy, xx = np.mgrid[:H, :W]
            disc = (yy - 120) ** 2 + (xx - 240) ** 2 < 50**2
            add_object(client, image_id, box | disc, label="box and disc")
            driver.get(session["url"] + "/")
            wait_for(driver, f"{READY} && {STATE}.objects.length === 1")
            shift_click(driver, 60, 60)
            keys(driver, "v")
            wait_for(driver, "window.samkit.polygons.polygons.length === 2")
        else:  # the mouse resting on the disc
            open_page(session)
            keys(driver, "m")
            hover(driver, 230.5, 110.5)
            wait_for(driver, "window.samkit.hover.mask !== null")
        time.sleep(0.3)  # the overlay's next frame
        driver.save_screenshot(str(Path(tmp) / "shot.png"))
        shutil.copy(Path(tmp) / "shot.png", args.screenshot)
    print(json.dumps({"screenshot": args.screenshot}))


if __name__ == "__main__":
    main()

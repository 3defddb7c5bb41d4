"""The annotator's view in real headless Chromium (issue 27): zoom and pan keep clicks, boxes
and drawn masks on the image pixels shown; mask opacity and outlines; the map of keys, which
docs/annotator.md repeats."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from browser_kit import (
    MASK_SHOWN,
    canvas_colours,
    click_image,
    drag,
    keys,
    needs_chromium,
    pick_point,
    viewport_point,
    wait_for,
    wheel,
)
from PIL import Image

from samkit.rle import decode_coco_rle

STATE, VIEW = "window.samkit.state", "window.samkit.view"
READY = "document.body.dataset.state === 'ready'"
CLEARED = f"{STATE}.result === null && {READY}"
DOCS = Path(__file__).parents[1] / "docs" / "annotator.md"


def open_page(session: dict[str, Any]) -> tuple[Any, Any, str]:
    """The page on the scene, ready; the driver, an API client and the image's id."""
    from fastapi.testclient import TestClient

    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    session["driver"].get(session["url"] + "/")
    wait_for(session["driver"], READY)
    return session["driver"], client, image_id


def view(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(f"return {{...{VIEW}}}"))


def shown(driver: Any) -> tuple[list[float], np.ndarray]:
    """The point sent with the mask on screen, and that mask."""
    point, rle = driver.execute_script(
        f"const S = {STATE}; return [S.prompt.points[0], S.result.masks[S.selected].segmentation]"
    )
    return point, decode_coco_rle(rle)


def click_and_wait(driver: Any, x: float, y: float) -> tuple[list[float], np.ndarray]:
    click_image(driver, x, y)
    wait_for(driver, MASK_SHOWN)
    return shown(driver)


def clear(driver: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    keys(driver, Keys.ESCAPE)
    wait_for(driver, CLEARED)


def outline(mask: np.ndarray, band: int = 1) -> np.ndarray:
    """The mask's pixels with an unset pixel (or the image's edge) in their (2 band + 1)^2
    square: what outline mode draws."""
    h, w = mask.shape
    padded = np.pad(mask, band)
    inside = np.ones_like(mask)
    for dy in range(2 * band + 1):
        for dx in range(2 * band + 1):
            inside &= padded[dy : dy + h, dx : dx + w]
    return mask & ~inside


def visible(driver: Any, mask: np.ndarray, away_from: list[float], margin: float) -> np.ndarray:
    """`mask` cut to the image pixels the canvas shows now, leaving out those within `margin`
    canvas pixels of image point `away_from` (where the click's mark is drawn)."""
    v = view(driver)
    width, height = driver.execute_script(
        "const c = document.getElementById('canvas'); return [c.width, c.height]"
    )
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]]
    cx, cy = (xs + 0.5 - v["x"]) * v["scale"], (ys + 0.5 - v["y"]) * v["scale"]
    on_canvas = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
    mark = np.hypot(
        cx - (away_from[0] - v["x"]) * v["scale"], cy - (away_from[1] - v["y"]) * v["scale"]
    )
    return mask & on_canvas & (mark > margin)


def sample(mask: np.ndarray, n: int = 40) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(mask)
    assert len(xs) >= 10, "too few pixels to sample"
    pick = np.random.default_rng(0).choice(len(xs), size=min(n, len(xs)), replace=False)
    return [(int(xs[i]), int(ys[i])) for i in pick]


@needs_chromium
def test_clicks_and_boxes_land_on_the_pixel_shown_at_any_zoom(session: dict[str, Any]) -> None:
    """Wheel-zoom at a point, click: the request's point is the pixel clicked and the mask is the
    unzoomed click's; Space+drag and middle-drag pan without prompting, and clicks still land;
    a drag at zoom is the box shown; 0, F and the fit button show the whole image again."""
    from selenium.webdriver.common.by import By

    driver, client, image_id = open_page(session)
    x, y = pick_point(client, image_id)
    p0, m0 = click_and_wait(driver, x + 0.5, y + 0.5)
    assert (math.floor(p0[0]), math.floor(p0[1])) == (x, y)
    clear(driver)

    fit = view(driver)
    assert fit["scale"] == fit["fit"] > 1 and fit["x"] == fit["y"] == 0
    cursor = viewport_point(driver, *p0)
    rect = "document.getElementById('canvas').getBoundingClientRect()"
    left, top = driver.execute_script(f"const r = {rect}; return [r.left, r.top]")

    def under_cursor(v: dict[str, Any]) -> np.ndarray:
        return np.array(
            [v["x"] + (cursor[0] - left) / v["scale"], v["y"] + (cursor[1] - top) / v["scale"]]
        )

    wheel(driver, cursor, -600)
    wheel(driver, cursor, -600)
    zoomed = view(driver)
    assert zoomed["scale"] > 5 * fit["scale"]
    assert np.allclose(under_cursor(zoomed), under_cursor(fit), atol=1e-6)  # zoomed around it
    p1, m1 = click_and_wait(driver, *p0)
    assert np.allclose(p1, p0, atol=0.5 / zoomed["scale"] + 1e-9)
    assert np.array_equal(m1, m0)
    clear(driver)

    # Pan: the image follows the mouse, and no prompt is added.
    start = viewport_point(driver, *p0)
    drag(driver, start, (start[0] - 120, start[1] - 80), hold=" ")
    panned = view(driver)
    assert np.allclose(
        [panned["x"], panned["y"]],
        [zoomed["x"] + 120 / zoomed["scale"], zoomed["y"] + 80 / zoomed["scale"]],
    )
    assert panned["scale"] == zoomed["scale"] and not panned["space"]  # Space let go
    assert driver.execute_script(f"return {STATE}.prompt.points.length + !!{STATE}.prompt.box") == 0
    p2, m2 = click_and_wait(driver, *p0)
    assert np.allclose(p2, p0, atol=0.5 / zoomed["scale"] + 1e-9) and np.array_equal(m2, m0)
    clear(driver)
    drag(driver, (start[0] - 120, start[1] - 80), start, button=1)  # the middle button
    back = view(driver)
    assert np.allclose([back["x"], back["y"]], [zoomed["x"], zoomed["y"]])
    assert driver.execute_script(f"return {STATE}.prompt.points.length") == 0

    # A box drawn at zoom has the image corners under the mouse.
    drag(driver, viewport_point(driver, x - 3, y - 2), viewport_point(driver, x + 4, y + 5))
    wait_for(driver, MASK_SHOWN)
    box = driver.execute_script(f"return {STATE}.prompt.box")
    assert np.allclose(box, [x - 3, y - 2, x + 4, y + 5], atol=0.5 / zoomed["scale"] + 1e-9)
    clear(driver)

    # Fit: the whole image again, and a click lands exactly where the first one did.
    keys(driver, "0")
    assert view(driver) == fit
    p3, m3 = click_and_wait(driver, x + 0.5, y + 0.5)
    assert p3 == p0 and np.array_equal(m3, m0)
    clear(driver)
    for key in ("+", "="):
        keys(driver, key)
    assert math.isclose(view(driver)["scale"], fit["scale"] * 1.5**2)
    keys(driver, "-")
    assert math.isclose(view(driver)["scale"], fit["scale"] * 1.5)
    keys(driver, "f")
    assert view(driver) == fit
    driver.find_element(By.ID, "zoom-in").click()
    assert view(driver)["scale"] > fit["scale"]
    assert driver.find_element(By.ID, "zoom").text == f"{math.floor(fit['scale'] * 150 + 0.5)}%"
    driver.find_element(By.ID, "fit").click()
    assert view(driver) == fit
    keys(driver, "-")  # no further out than the whole image
    assert view(driver) == fit


@needs_chromium
def test_the_canvas_shows_each_image_pixel_where_clicks_go(session: dict[str, Any]) -> None:
    """At the fit, zoomed in on the noisy background and panned, the canvas pixel at each image
    pixel's centre (as the page maps image -> canvas for clicks) shows that pixel of the image
    the server sends, and not its neighbours."""
    driver, client, image_id = open_page(session)
    jpeg = client.get(f"/api/images/{image_id}/image").content
    image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int32)

    def error(x0: int, y0: int) -> dict[tuple[int, int], float]:
        """Mean |canvas - image| over the 10x10 patch around (x0, y0), the image shifted by each
        (dx, dy)."""
        patch = [(x, y) for y in range(y0 - 5, y0 + 5) for x in range(x0 - 5, x0 + 5)]
        inside = np.zeros(image.shape[:2], dtype=bool)
        inside[y0 - 5 : y0 + 5, x0 - 5 : x0 + 5] = True
        assert visible(driver, inside, [0, 0], -1).sum() == len(patch)  # all on the canvas
        rgb = canvas_colours(driver, patch)[:, :3]
        out = {}
        for dx, dy in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]:
            ref = np.array([image[y + dy, x + dx] for x, y in patch])
            out[(dx, dy)] = float(np.abs(rgb - ref).mean())
        return out

    noise = (220, 36)  # the background (RGB 90..160) above the red box and left of the disc
    for step in ("fit", "zoom", "pan"):
        if step == "zoom":
            wheel(driver, viewport_point(driver, *noise), -800)
            assert view(driver)["scale"] > 4 * view(driver)["fit"]
        if step == "pan":
            at = viewport_point(driver, *noise)
            drag(driver, at, (at[0] + 90, at[1] + 60), button=1)
        errors = error(*noise)
        assert errors[(0, 0)] < 4, (step, errors)
        assert errors[(0, 0)] * 3 < min(e for shift, e in errors.items() if shift != (0, 0)), (
            step,
            errors,
        )


@needs_chromium
def test_opacity_and_outlines_for_candidates_and_objects(session: dict[str, Any]) -> None:
    """The slider and [ ] set the fill's alpha (read back from the canvas against the image's
    colour); O draws only the boundary pixels, in the mask's colour, for the candidate and for
    an accepted object, while the inside keeps the image's colour. Zoomed in by 1.5."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, client, image_id = open_page(session)
    x, y = pick_point(client, image_id)
    keys(driver, "+")
    point, mask = click_and_wait(driver, x + 0.5, y + 0.5)
    margin = 12  # the click's mark: 5 px and its stroke
    inner = mask & ~outline(mask, 3)
    interior = sample(visible(driver, inner, point, margin))
    boundary = sample(visible(driver, outline(mask), point, margin))
    candidate = np.array([30, 144, 255, 255])

    slider = driver.find_element(By.ID, "opacity")
    slider.click()
    slider.send_keys(Keys.HOME)  # the slider's own keys: 0 %
    assert driver.execute_script(f"return {VIEW}.opacity") == 0
    image_rgb = canvas_colours(driver, interior)
    slider.send_keys(Keys.END)
    assert (canvas_colours(driver, interior) == candidate).all()
    keys(driver, "[", "[", "[")  # 100 -> 70 %
    assert slider.get_attribute("value") == "70"
    blend = 0.3 * image_rgb[:, :3] + 0.7 * candidate[:3]
    assert np.abs(canvas_colours(driver, interior)[:, :3] - blend).max() <= 2
    keys(driver, "]")
    assert driver.execute_script(f"return {VIEW}.opacity") == 0.8

    keys(driver, "o")
    assert driver.find_element(By.ID, "outline").get_attribute("aria-pressed") == "true"
    assert (canvas_colours(driver, boundary) == candidate).all()
    assert (canvas_colours(driver, interior) == image_rgb).all()

    keys(driver, Keys.ENTER)  # accept: the object is drawn, outlined, in its own colour
    wait_for(driver, f"{STATE}.objects.length === 1 && {CLEARED}")
    colour = driver.execute_async_script(
        "const done = arguments[0], id = window.samkit.state.objects[0].id;"
        "import('/static/masks.js').then((m) => done(m.color(id)));"
    )
    assert (canvas_colours(driver, boundary) == colour).all()
    assert (canvas_colours(driver, interior) == image_rgb).all()
    driver.find_element(By.ID, "outline").click()  # filled again, at 80 %
    assert driver.find_element(By.ID, "outline").get_attribute("aria-pressed") == "false"
    blend = 0.2 * image_rgb[:, :3] + 0.8 * np.array(colour[:3])
    assert np.abs(canvas_colours(driver, interior)[:, :3] - blend).max() <= 2


def docs_keys() -> list[list[str]]:
    """The rows of docs/annotator.md's table of keys (under "## The page"), backticks dropped."""
    text = DOCS.read_text().split("\n## The page", 1)[1].split("\n## ", 1)[0]
    header = "| keys | what they do |"
    assert header in text, f"{DOCS} has no table starting {header!r} under ## The page"
    rows = []
    for line in text.split(header, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("`", "") for cell in line.split("|")[1:-1]])
    return rows


@needs_chromium
def test_the_map_of_keys_lists_every_shortcut_and_each_has_a_control(
    session: dict[str, Any],
) -> None:
    """? and its button show the map, built from keys.js's one table: every shortcut, what it
    does, then the mouse's gestures; each shortcut's control exists and its title names the
    keys; Esc closes the map and leaves the prompt alone; the buttons do what the keys do;
    docs/annotator.md's table is the same."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, client, image_id = open_page(session)
    table = driver.execute_async_script(
        "const done = arguments[0];"
        "import('/static/keys.js').then((m) => done({"
        "  shortcuts: m.SHORTCUTS.map((row) => [m.keysOf(row), row.does, row.control]),"
        "  mouse: m.MOUSE}));"
    )
    expected = [row[:2] for row in table["shortcuts"]] + table["mouse"]
    assert len(table["shortcuts"]) >= 18 and len(table["mouse"]) == 5
    assert docs_keys() == expected

    keymap = driver.find_element(By.ID, "keymap")
    assert not keymap.is_displayed()
    keys(driver, "?")
    assert keymap.is_displayed()
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#keymap tr')]"
        ".map((tr) => [...tr.cells].map((td) => td.textContent))"
    )
    assert rows == expected
    for key_names, does, control in table["shortcuts"]:
        kind, title = driver.execute_script(
            "const el = document.getElementById(arguments[0]); return [el.tagName, el.title]",
            control,
        )
        assert kind in ("BUTTON", "INPUT"), (control, kind)
        assert f"{does} ({key_names})" in title
    keys(driver, "?")
    assert not keymap.is_displayed()

    x, y = pick_point(client, image_id)
    click_and_wait(driver, x + 0.5, y + 0.5)
    driver.find_element(By.ID, "keys-map").click()
    assert keymap.is_displayed()
    keys(driver, Keys.ESCAPE)  # closes the map only
    assert not keymap.is_displayed()
    assert driver.execute_script(f"return {STATE}.prompt.points.length") == 1

    best = driver.execute_script(f"return {STATE}.result.best")
    driver.find_element(By.ID, "next-candidate").click()  # Tab
    assert driver.execute_script(f"return {STATE}.selected") == (best + 1) % 3
    driver.find_element(By.ID, "hide-all").click()  # H
    assert driver.execute_script(f"return {STATE}.hideAll")
    keys(driver, "h")
    assert not driver.execute_script(f"return {STATE}.hideAll")
    assert driver.find_element(By.ID, "hide-all").get_attribute("aria-pressed") == "false"
    driver.find_element(By.ID, "outline").click()  # O
    assert driver.execute_script(f"return {VIEW}.outline")
    driver.find_element(By.ID, "zoom-out").click()  # -, at the fit already
    assert view(driver)["scale"] == view(driver)["fit"]

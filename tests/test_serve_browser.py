"""End to end in real headless Chromium: click an object, see its mask, accept it, export COCO.

Needs Debian's `chromium` and `chromium-driver` (`make test` installs them when missing);
skipped, with the reason, where they are absent. Selenium is pointed at the system
chromedriver, so selenium-manager never downloads anything.

`python tests/test_serve_browser.py docs/img/annotator.png [--model NAME|PATH]` runs the same
session (seeded `samkit_tiny` by default), clicks a second object and saves the screenshot
for the README; with `--text PHRASE` (docs/img/annotator_text.png) it segments by the phrase
and refines with a click instead, on a model with a text head (default: samkit_default with a
fresh, untrained one).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from browser_kit import (  # the kit the browser tests share
    MASK_SHOWN,
    annotator,
    click_at,
    keys,
    needs_chromium,
    pick_point,
    scene,
    segment_by_text,
    text_model,
    wait_for,
)
from PIL import Image

from samkit.io import annotation_to_mask, read_coco
from samkit.rle import decode_coco_rle, encode_coco_rle


def annotate_and_export(session: dict[str, Any], screenshot: Path) -> dict[str, Any]:
    """Drive the page: click, cycle, undo/redo, accept with a label, export COCO."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = session["driver"]
    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    x, y = pick_point(client, image_id)
    state = "window.samkit.state"

    driver.get(session["url"] + "/")
    wait_for(driver, "document.body.dataset.state === 'ready'")
    click_at(driver, x, y)
    wait_for(driver, MASK_SHOWN)
    best = driver.execute_script(f"return {state}.result.best")
    keys(driver, Keys.TAB)  # next candidate
    assert driver.execute_script(f"return {state}.selected") == (best + 1) % 3
    click_at(driver, 300, 20, right=True)  # a negative point: a second prediction
    wait_for(driver, f"{state}.prompt.labels.join() === '1,0' && {state}.history.length === 2")
    wait_for(driver, MASK_SHOWN)
    keys(driver, "z", "z")  # undo both clicks
    assert driver.execute_script(f"return {state}.result === null && !{state}.prompt.points.length")
    keys(driver, "z", shift=True)  # redo the first click, candidate choice included
    assert driver.execute_script(f"return {state}.selected") == (best + 1) % 3
    assert driver.execute_script(f"return {state}.prompt.labels.join()") == "1"
    shown = driver.execute_script(
        f"const S = {state};"
        "return {area: window.samkit.shownArea(), mask: S.result.masks[S.selected],"
        " index: S.selected, point: S.prompt.points[0]};"
    )
    label = driver.find_element(By.ID, "label")
    label.clear()
    label.send_keys("red box")
    label.send_keys(Keys.ENTER)  # Enter in the label field accepts
    wait_for(driver, f"{state}.objects.length === 1 && {state}.result === null")
    status = driver.find_element(By.ID, "status").text  # the label carried over is said
    assert status == 'saved #1 as "red box"; the next object gets this label too (L to change it)'
    driver.find_element(By.ID, "export-btn").click()
    wait_for(driver, "document.body.dataset.exported === 'coco'")
    result = driver.find_element(By.ID, "export-result").text
    assert result == "exported 1 object(s) of 1 image(s) to .samkit/export/coco/"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    return {"shown": shown, "point": (x, y), "client": client, "image_id": image_id}


@needs_chromium
def test_click_accept_export_in_chromium(session: dict[str, Any], tmp_path: Path) -> None:
    out = annotate_and_export(session, tmp_path / "annotator.png")
    shown, (x, y) = out["shown"], out["point"]
    px, py = shown["point"]
    assert abs(px - (x + 0.5)) < 1.5 and abs(py - (y + 0.5)) < 1.5  # the click landed there
    drawn = decode_coco_rle(shown["mask"]["segmentation"])
    assert shown["area"] == int(drawn.sum()) > 0  # the page painted every pixel of the mask

    # The same prompt through the API gives the mask the page showed.
    url = f"/api/images/{out['image_id']}/predict"
    api = out["client"].post(url, json={"points": [[px, py]], "labels": [1]}).json()
    assert np.array_equal(decode_coco_rle(api["masks"][shown["index"]]["segmentation"]), drawn)

    coco = read_coco(session["folder"] / ".samkit" / "export" / "coco" / "annotations.json")
    assert [c["name"] for c in coco.categories.values()] == ["red box"]
    (image,) = coco.images.values()
    (ann,) = coco.annotations[image["id"]]
    exported = annotation_to_mask(ann, image["height"], image["width"])
    assert np.array_equal(exported, drawn)
    assert (tmp_path / "annotator.png").stat().st_size > 10_000


@needs_chromium
def test_segment_everything_objects_and_navigation(session: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By

    driver, state = session["driver"], "window.samkit.state"
    Image.fromarray(scene()[::-1]).save(session["folder"] / "second.png")
    driver.get(session["url"] + "/")
    wait_for(driver, "document.body.dataset.state === 'ready'")
    names = lambda: driver.find_element(By.ID, "file-name").text  # noqa: E731
    assert names().startswith("scene.png (1/2)")
    keys(driver, "n")
    wait_for(driver, f"{state}.index === 1 && document.body.dataset.state === 'ready'")
    assert names().startswith("second.png (2/2)")
    keys(driver, "p")
    wait_for(driver, f"{state}.index === 0 && document.body.dataset.state === 'ready'")

    options = {
        "points_per_side": 4,
        "pred_iou_thresh": 0,
        "stability_score_thresh": 0,
        "box_nms_thresh": 1,
    }
    driver.find_element(By.CSS_SELECTOR, "#amg-settings summary").click()  # unfold
    for name, value in zip(
        ("amg-points", "amg-iou", "amg-stability", "amg-nms"), options.values(), strict=True
    ):
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "canvas").click()  # focus the page again, adding a point
    wait_for(driver, MASK_SHOWN)
    keys(driver, "e")
    wait_for(driver, f"{state}.proposals.length > 0 && document.body.dataset.state === 'ready'")
    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    image_id = client.get("/api/images").json()[0]["id"]
    url = f"/api/images/{image_id}/everything"
    expected = client.post(url, json=options).json()["masks"]
    shown = driver.execute_script(f"return {state}.proposals")
    assert [m["segmentation"] for m in shown] == [m["segmentation"] for m in expected]

    driver.find_element(By.CSS_SELECTOR, "#proposal-list li button[title='discard']").click()
    wait_for(driver, f"{state}.proposals.length === {len(expected) - 1}")
    driver.find_element(By.ID, "accept-all").click()
    wait_for(driver, f"{state}.objects.length === {len(expected) - 1}")
    saved = client.get(f"/api/images/{image_id}/annotations").json()
    assert [a["area"] for a in saved] == [m["area"] for m in expected[1:]]

    first = driver.find_element(By.CSS_SELECTOR, "#objects li")
    first.find_element(By.XPATH, "./button[text()='hide']").click()
    wait_for(driver, f"{state}.hidden.has({saved[0]['id']})")
    assert "hidden-object" in driver.find_element(By.CSS_SELECTOR, "#objects li").get_attribute(
        "class"
    )
    driver.find_element(By.CSS_SELECTOR, "#objects li button[title='delete this object']").click()
    driver.switch_to.alert.accept()  # "Delete object #n (label)?"
    wait_for(driver, f"{state}.objects.length === {len(expected) - 2}")
    left = client.get(f"/api/images/{image_id}/annotations").json()
    assert [a["id"] for a in left] == [a["id"] for a in saved[1:]]


def test_page_keeps_its_place_and_says_what_it_does(session: dict[str, Any]) -> None:
    """Issue 27: the ends of the image list say so, a reload keeps the image and the hidden
    objects, deleting asks first, discarded proposals leave the status line, IoU <= 1."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By

    driver, state = session["driver"], "window.samkit.state"
    ready = "document.body.dataset.state === 'ready'"
    Image.fromarray(scene()[::-1]).save(session["folder"] / "second.png")
    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    second = {im["file_name"]: im["id"] for im in client.get("/api/images").json()}["second.png"]
    url = f"/api/images/{second}/annotations"
    for y0, label in [(10, "cat"), (60, "dog")]:
        mask = np.zeros((240, 320), dtype=bool)
        mask[y0 : y0 + 30, 20:60] = True
        body = {"label": label, "segmentation": encode_coco_rle(mask)}
        assert client.post(url, json=body).status_code == 201
    cat, dog = (a["id"] for a in client.get(url).json())
    status = lambda: driver.find_element(By.ID, "status").text  # noqa: E731

    driver.get(session["url"] + "/")
    wait_for(driver, ready)
    keys(driver, "p")
    assert status() == "first image (1/2): there is no previous one"
    keys(driver, "n")
    wait_for(driver, f"{state}.index === 1 && {state}.objects.length === 2 && {ready}")
    keys(driver, "n")
    assert status() == "last image (2/2): there is no next one"
    assert driver.execute_script(f"return {state}.index") == 1

    driver.find_element(By.XPATH, "//ul[@id='objects']/li[1]/button[text()='hide']").click()
    wait_for(driver, f"{state}.hidden.has({cat})")
    driver.refresh()  # the same image, the same objects hidden
    wait_for(driver, f"{state}.objects.length === 2 && {ready}")
    assert driver.execute_script(f"return [{state}.index, [...{state}.hidden]]") == [1, [cat]]
    first = driver.find_element(By.CSS_SELECTOR, "#objects li")
    assert "hidden-object" in first.get_attribute("class")

    delete = "#objects li button[title='delete this object']"
    driver.find_element(By.CSS_SELECTOR, delete).click()
    alert = driver.switch_to.alert
    assert alert.text == "Delete object #1 (cat)?"
    alert.dismiss()  # nothing deleted
    assert [a["id"] for a in client.get(url).json()] == [cat, dog]
    driver.find_element(By.CSS_SELECTOR, delete).click()
    driver.switch_to.alert.accept()
    wait_for(driver, f"{state}.objects.length === 1")
    assert [a["id"] for a in client.get(url).json()] == [dog]

    driver.find_element(By.CSS_SELECTOR, "#amg-settings summary").click()  # unfold
    for name, value in [("amg-points", 4), ("amg-iou", 0), ("amg-stability", 0), ("amg-nms", 1)]:
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "everything").click()
    wait_for(driver, f"{state}.proposals.length > 0 && {ready}")
    assert "proposals in" in status()
    driver.find_element(By.ID, "discard-all").click()
    wait_for(driver, f"{state}.proposals.length === 0")
    assert status() == "no proposals left"

    shown = driver.execute_async_script(
        "const done = arguments[0];"
        "import('/static/panels.js').then((m) => done([m.iou(1.0204, 3), m.iou(-0.02, 2)]));"
    )
    assert shown == ["IoU 1.000", "IoU 0.00"]  # the model's 1.0204 is shown as 1.000


class Gate:
    """Holds the requests whose path ends in one of `paths` until `release` is set."""

    def __init__(self, *paths: str) -> None:
        self.paths = paths
        self.release = threading.Event()
        self.held: list[str] = []
        self._changed = threading.Condition()

    def hold(self, path: str) -> None:
        if path.endswith(self.paths):
            with self._changed:
                self.held.append(path)
                self._changed.notify_all()
            self.release.wait(60)

    def wait_held(self, count: int, timeout: float = 60.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.held) >= count, timeout):
                raise TimeoutError(f"{count} requests never reached the proxy; got {self.held}")


@contextmanager
def delaying_proxy(upstream: str, gate: Gate) -> Iterator[str]:
    """A real HTTP proxy on 127.0.0.1 in front of `upstream` that holds what `gate` names (the
    latency of a slow model or network); yields its base URL. Headers pass unchanged."""
    import http.client
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, port = upstream.removeprefix("http://").rsplit(":", 1)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            gate.hold(self.path)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        gate.release.set()
        server.shutdown()
        server.server_close()


@needs_chromium
def test_late_answers_never_land_on_the_next_image(session: dict[str, Any]) -> None:
    """Click on image A and ask for segment-everything, then press N while both answers are
    delayed: A's masks must not be drawn over B, nor saved as B's annotations."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.keys import Keys

    driver, state = session["driver"], "window.samkit.state"
    Image.fromarray(scene()[::-1]).save(session["folder"] / "second.png")  # B: A's size
    client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
    a, b = (im["id"] for im in client.get("/api/images").json())
    x, y = pick_point(client, a)
    gate = Gate("/predict", "/everything")
    with delaying_proxy(session["url"], gate) as url:
        driver.get(url + "/")
        wait_for(driver, "document.body.dataset.state === 'ready'")
        click_at(driver, x, y)  # on A
        gate.wait_held(1)
        keys(driver, "e")
        gate.wait_held(2)
        keys(driver, "n")
        wait_for(driver, f"{state}.index === 1 && document.body.dataset.state === 'ready'")
        gate.release.set()  # A's answers arrive while B is open
        wait_for(driver, "window.samkit.inFlight() === 0")
        assert driver.execute_script(f"return {state}.info.id") == b
        assert driver.execute_script(f"return {state}.result") is None, "A's masks drawn on B"
        assert driver.execute_script(f"return {state}.proposals.length") == 0
        keys(driver, Keys.ENTER)  # accept the mask on screen, if any
        driver.execute_script("document.getElementById('accept-all').click()")  # hidden: none
        wait_for(driver, "window.samkit.inFlight() === 0")
        assert driver.execute_script(f"return {state}.objects.length") == 0
    assert client.get(f"/api/images/{b}/annotations").json() == []
    assert client.get(f"/api/images/{a}/annotations").json() == []
    assert [p.rsplit("/", 1)[1] for p in gate.held] == ["predict", "everything"]


def main() -> None:
    """Run the session outside pytest, click the disc too, and save the screenshot (with
    --zoom: zoomed in, outlines only, the map of keys open; docs/img/annotator_zoom.png)."""
    import argparse

    from browser_kit import drag, viewport_point, wheel

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("screenshot", nargs="?", default="docs/img/annotator.png")
    ap.add_argument("--model", default=None, help="model name or weights file")
    ap.add_argument("--text", metavar="PHRASE", help="segment by a phrase, refine with a click")
    ap.add_argument(
        "--zoom",
        action="store_true",
        help="then zoom in between the red box and the disc, draw outlines, open the map of keys",
    )
    args = ap.parse_args()
    screenshot = args.screenshot
    with tempfile.TemporaryDirectory() as tmp:
        if args.text:
            with annotator(Path(tmp), args.model or text_model(Path(tmp))) as state:
                segment_by_text(state, args.text, (95, 110))
                state["driver"].save_screenshot(str(Path(tmp) / "shot.png"))
        else:
            with annotator(Path(tmp), args.model or "samkit_tiny") as state:
                annotate_and_export(state, Path(tmp) / "shot.png")
                click_at(state["driver"], 240, 120)  # a live mask next to the accepted object
                wait_for(state["driver"], MASK_SHOWN)
                if args.zoom:  # between the box and the disc, panned left of the map of keys
                    driver = state["driver"]
                    wheel(driver, viewport_point(driver, 170, 110), -400)
                    at = viewport_point(driver, 170, 110)
                    drag(driver, at, (at[0] - 190, at[1]), hold=" ")  # Space+drag
                    keys(driver, "o", "?")  # outlines only, the map of keys
                state["driver"].save_screenshot(str(Path(tmp) / "shot.png"))
        shutil.copy(Path(tmp) / "shot.png", screenshot)
    print(json.dumps({"screenshot": screenshot}))


if __name__ == "__main__":
    main()

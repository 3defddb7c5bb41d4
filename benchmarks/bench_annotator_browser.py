"""Click-to-mask-drawn latency of the annotator in a real browser, against the in-process
predictor on the same model and image.

Serves a folder holding a photo at 1024 x 768 and at 6000 x 4000 (24 MP) with `samkit serve`
(a subprocess on 127.0.0.1), opens each in headless Chromium and, once the image's embedding
exists, clicks single points on it (the prompt cleared between clicks). Each click is timed in
the page, from the pointer event's timestamp to the first animation frame after the candidate
masks are drawn: HTTP, the model, RLE, the browser decoding 3 masks at full resolution and
painting them. The peer is `SamPredictor.predict` on the same model and image in this process
(the model alone).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_annotator_browser.py --clicks 30

Needs Debian's chromium and chromium-driver, and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_serve import build, timed  # this script's folder is on sys.path
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_kit import chrome, viewport_point, wait_for  # noqa: E402

READY = "document.body.dataset.state === 'ready'"
# In the page: time from the click's pointer event to the frame after the masks are drawn.
# The app sets data-state "ready" and renders in the same task, so the observer (a microtask
# after that task) runs once the canvas holds the masks; the next frame puts them on screen.
HOOK = """
window.__lat = [];
document.getElementById('canvas').addEventListener('pointerdown', (e) => {
  const t0 = e.timeStamp;
  const seen = new MutationObserver(() => {
    if (document.body.dataset.state !== 'ready' || !window.samkit.state.result) return;
    seen.disconnect();
    requestAnimationFrame(() => window.__lat.push(performance.now() - t0));
  });
  seen.observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
}, { capture: true });
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(folder: Path, model: str, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "samkit.cli", "serve", str(folder), "--model", model]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"samkit serve exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("samkit serve did not start in 60 s")


def points(width: int, height: int, n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(0)
    return [(rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height) for _ in range(n)]


def browser_clicks(
    driver: Any, url: str, index: int, clicks: list[tuple[float, float]]
) -> list[float]:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{url}/")
    wait_for(driver, READY, timeout=600)
    for _ in range(index):  # N opens the next image; its embedding is made on opening
        driver.find_element("tag name", "body").send_keys("n")
        wait_for(driver, f"window.samkit.state.index === {index} && {READY}", timeout=600)
    driver.execute_script(HOOK)
    for k, (x, y) in enumerate(clicks):
        actions = ActionBuilder(driver)
        actions.pointer_action.move_to_location(*viewport_point(driver, x, y)).click()
        actions.perform()
        wait_for(driver, f"window.__lat.length === {k + 1}", timeout=600)
        driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)  # clear the prompt
        wait_for(driver, f"!window.samkit.state.result && {READY}")
    return [v / 1e3 for v in driver.execute_script("return window.__lat")[1:]]  # 1st: warm-up


def in_process(predictor: Any, clicks: list[tuple[float, float]]) -> Callable[[], object]:
    """One single-point predict a call, at the browser's click points in turn."""
    calls = iter(clicks * 2)  # timed() calls once more, to warm up
    return lambda: predictor.predict(np.array([next(calls)]), np.array([1]))


def stats(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1e3 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.9 * len(ms)))]


def main() -> None:
    from samkit import SamPredictor

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", help="an RGB photo, resized to each size (scikit-image's coffee)")
    ap.add_argument("--model", default="samkit_default")
    ap.add_argument("--sizes", default="1024x768,6000x4000", help="WxH,WxH")
    ap.add_argument("--clicks", type=int, default=30, help="timed clicks an image (+1 warm-up)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.clicks < 2:
        ap.error("--clicks must be >= 2")
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.photo:
        photo = Image.open(args.photo).convert("RGB")
    else:
        from skimage import data

        photo = Image.fromarray(data.coffee())
    model = build(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        images = []
        for i, (w, h) in enumerate(sizes):
            rgb = np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC))
            Image.fromarray(rgb).save(folder / f"{i}_{w}x{h}.png")
            images.append(rgb)
        proc, url = serve(folder, args.model, args.threads)
        driver = chrome(Path(tmp) / "profile")
        try:
            for i, ((w, h), rgb) in enumerate(zip(sizes, images, strict=True)):
                clicks = points(w, h, args.clicks + 1)
                browser = browser_clicks(driver, url, i, clicks)
                predictor = SamPredictor(model)
                predictor.set_image(rgb)
                direct = timed(in_process(predictor, clicks), args.clicks)
                rows.append((f"{w} x {h}", stats(browser), stats(direct)))
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(30)
    print(f"model {args.model}, {args.threads} threads, {args.clicks} clicks an image")
    print(
        "| image | browser click-to-mask-drawn p50 / p90 | in-process predict p50 / p90 "
        "(peer) | ratio of p50s |"
    )
    print("|---|---|---|---|")
    for name, (b50, b90), (d50, d90) in rows:
        print(
            f"| {name} | {b50:.0f} / {b90:.0f} ms | {d50:.0f} / {d90:.0f} ms | {b50 / d50:.2f}x |"
        )


if __name__ == "__main__":
    main()

"""The page's semi-automatic stage in headless Chromium: pre-fill (G), accept all, click one
more object, and the masks per stage the page shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from browser_kit import MASK_SHOWN, annotator, click_at, keys, needs_chromium, wait_for

READY = "document.body.dataset.state === 'ready'"


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

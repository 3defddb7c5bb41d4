"""The annotator's text box in real headless Chromium (issue 28): a phrase segments, clicks
refine with the phrase; hidden for a model without a text head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_kit import (
    MASK_SHOWN,
    annotator,
    click_at,
    keys,
    needs_chromium,
    segment_by_text,
    text_model,
    wait_for,
)

from samkit.rle import decode_coco_rle


@needs_chromium
def test_a_phrase_then_a_click_in_chromium(tmp_path: Path) -> None:
    """Issue 28: a phrase and Enter draw its mask as a candidate; a click refines it and is sent
    with the phrase (the page shows what the API gives with the phrase, not without); the
    shortcuts work again once the box is left; accepting keeps the phrase with the object and
    empties the box; a phrase after a click starts anew; an emptied box drops the phrase."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    phrase, state = "the red box", "window.samkit.state"
    with annotator(tmp_path, text_model(tmp_path)) as session:
        driver = session["driver"]
        client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
        image_id = client.get("/api/images").json()[0]["id"]
        out = segment_by_text(session, phrase, (95, 110))
        first, second = out["first"], out["second"]
        assert out["typed"] == [False, 0, "ready"]
        assert first["focused"] != "text" and first["status"].startswith(f'mask for "{phrase}" in')
        (shown,) = first["result"]["masks"]  # one candidate: a phrase names one object
        assert first["area"] == shown["area"] == decode_coco_rle(shown["segmentation"]).sum()
        url = f"/api/images/{image_id}/predict"
        api = client.post(url, json={"text": phrase, "multimask": False}).json()
        assert api["masks"][0]["segmentation"] == shown["segmentation"]

        prompt = second["prompt"]
        assert (prompt["text"], prompt["labels"], second["box"]) == (phrase, [1], phrase)
        refine = {
            "points": prompt["points"],
            "labels": [1],
            "mask_input": {"token": first["result"]["token"], "index": 0},
            "multimask": False,
        }
        (refined,) = second["result"]["masks"]
        with_text = client.post(url, json={**refine, "text": phrase}).json()["masks"][0]
        without = client.post(url, json=refine).json()["masks"][0]
        assert refined["segmentation"] == with_text["segmentation"]
        assert refined["predicted_iou"] == pytest.approx(with_text["predicted_iou"])
        assert without["predicted_iou"] != pytest.approx(refined["predicted_iou"])
        driver.save_screenshot(str(tmp_path / "annotator_text.png"))
        assert (tmp_path / "annotator_text.png").stat().st_size > 10_000

        keys(driver, "h")  # the page's shortcuts work again
        assert driver.execute_script(f"return {state}.hideAll") is True
        keys(driver, "h", Keys.ENTER)  # accept
        wait_for(driver, f"{state}.objects.length === 1 && {state}.result === null")
        box = driver.find_element(By.ID, "text")
        assert box.get_attribute("value") == ""  # a new object starts without the phrase
        (saved,) = client.get(f"/api/images/{image_id}/annotations").json()
        assert saved["text"] == phrase and saved["point_coords"] == prompt["points"]

        click_at(driver, 240, 120)  # a click on the disc, then a phrase: a new object
        wait_for(driver, f"{state}.prompt.points.length === 1 && {MASK_SHOWN}")
        box.send_keys("a blue disc", Keys.ENTER)
        wait_for(driver, f"{state}.prompt.text === 'a blue disc' && {MASK_SHOWN}")
        assert driver.execute_script(f"return {state}.prompt.points.length") == 0
        alone = client.post(url, json={"text": "a blue disc", "multimask": False}).json()
        shown = driver.execute_script(f"return {state}.result.masks[0]")  # no mask fed back
        assert shown["segmentation"] == alone["masks"][0]["segmentation"]
        assert shown["predicted_iou"] == pytest.approx(alone["masks"][0]["predicted_iou"])
        box.clear()
        box.send_keys(Keys.ENTER)  # no clicks left either: no mask
        wait_for(driver, f"{state}.prompt.text === null && {state}.result === null")


@needs_chromium
def test_the_text_box_is_hidden_for_a_model_without_a_text_head(session: dict[str, Any]) -> None:
    driver = session["driver"]
    driver.get(session["url"] + "/")
    wait_for(driver, "document.body.dataset.state === 'ready' && window.samkit.inFlight() === 0")
    assert driver.execute_script("return document.getElementById('text-box').hidden") is True
    keys(driver, "t")  # focuses nothing
    assert driver.execute_script("return document.activeElement.id") != "text"

"""Undo and redo over proposals in real headless Chromium: accepting pre-fill proposals (all at
once, or one) and discarding them are steps of the page's history, like accepting the
candidate (history.js's proposalsStep and discardStep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser_kit import annotator, ctrl_z, needs_chromium, server_state, until, wait_for

from samkit.rle import decode_coco_rle

STATE = "window.samkit.state"
READY = "document.body.dataset.state === 'ready'"


def shown_proposals(driver: Any) -> list[Any]:
    """The masks of the proposals on screen, in the list's order."""
    return list(driver.execute_script(f"return {STATE}.proposals.map((p) => p.segmentation)"))


def pixels(rles: list[Any]) -> list[bytes]:
    """The masks' pixels (any order), to compare the masks stored with those proposed."""
    return sorted(decode_coco_rle(rle).tobytes() for rle in rles)


def on_screen(driver: Any, proposals: int, objects: int) -> None:
    """Wait until the page shows `proposals` proposals and `objects` objects, all answered."""
    shown = f"{STATE}.proposals.length === {proposals} && {STATE}.objects.length === {objects}"
    wait_for(driver, f"{shown} && window.samkit.inFlight() === 0")


@needs_chromium
def test_undo_and_redo_accepting_and_discarding_proposals(tmp_path: Path) -> None:
    """Pre-fill, accept all: one step. Undo deletes every annotation it made and puts the
    proposals back in their order; redo makes them again, with their masks, label and source
    "proposal". Then one ✓ and one ✗: undo brings the discarded one back at its place, then the
    accepted one; redo saves it again."""
    from fastapi.testclient import TestClient
    from selenium.webdriver.common.by import By

    # samkit_default is trained: on the scene the AMG defaults keep the box and the disc.
    with annotator(tmp_path, model="samkit_default") as session:
        driver = session["driver"]
        client = TestClient(session["app"], base_url="http://127.0.0.1", headers={"X-Samkit": "1"})
        image_id = client.get("/api/images").json()[0]["id"]
        driver.get(session["url"] + "/")
        wait_for(driver, READY)
        driver.execute_script("document.getElementById('label').value = 'thing'")
        driver.find_element(By.ID, "prefill").click()
        wait_for(driver, f"{STATE}.proposals.length > 0 && {READY}")
        proposed = shown_proposals(driver)
        n = len(proposed)
        assert n >= 2  # the box and the disc

        driver.find_element(By.ID, "accept-all").click()
        until(lambda: len(server_state(client, image_id)) == n)
        accepted = server_state(client, image_id)
        assert {(a[0], a[2]) for a in accepted} == {("thing", "proposal")}
        stored = client.get(f"/api/images/{image_id}/annotations").json()
        assert pixels([a["segmentation"] for a in stored]) == pixels(proposed)  # their masks
        on_screen(driver, 0, n)
        assert driver.execute_script(f"return {STATE}.history.length") == 1  # one step for all

        ctrl_z(driver)
        until(lambda: server_state(client, image_id) == [])
        on_screen(driver, n, 0)
        assert shown_proposals(driver) == proposed  # back, in their order

        ctrl_z(driver, shift=True)
        until(lambda: server_state(client, image_id) == accepted)
        on_screen(driver, 0, n)

        ctrl_z(driver)  # back to the proposals, to take them one at a time
        on_screen(driver, n, 0)
        row = "#proposal-list li button"
        driver.find_element(By.CSS_SELECTOR, f"{row}[title='accept with the label']").click()
        until(lambda: len(server_state(client, image_id)) == 1)
        on_screen(driver, n - 1, 1)
        (one,) = server_state(client, image_id)
        assert one[2] == "proposal"
        # Each row's swatch keeps its mask's colour when rows above it leave the list.
        swatches, masks = driver.execute_script(
            "const S = window.samkit.state, css = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;"
            "return [[...document.querySelectorAll('#proposal-list .swatch')]"
            ".map((e) => e.style.backgroundColor), S.proposalMasks.map((m) => css(m.colour))];"
        )
        assert swatches == masks and len(swatches) == n - 1
        driver.find_element(By.CSS_SELECTOR, f"{row}[title='discard']").click()
        on_screen(driver, n - 2, 1)
        assert shown_proposals(driver) == proposed[2:]
        ctrl_z(driver)  # the discard: no request
        on_screen(driver, n - 1, 1)
        assert shown_proposals(driver) == proposed[1:]
        ctrl_z(driver)  # the accept
        until(lambda: server_state(client, image_id) == [])
        on_screen(driver, n, 0)
        assert shown_proposals(driver) == proposed
        ctrl_z(driver, shift=True)
        until(lambda: server_state(client, image_id) == [one])
        on_screen(driver, n - 1, 1)
        # Done: the ✓; undone: the ✗ (accept all's redo was dropped when ✓ made a new step).
        steps = driver.execute_script(f"return [{STATE}.history.length, {STATE}.future.length]")
        assert steps == [1, 1]

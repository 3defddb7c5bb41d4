"""Parity with Meta's `segment_anything`: replay the official package's recorded outputs.

The goldens come from `tools/make_goldens.py`, run in a throwaway venv with the official
package on the `samkit_tiny` architecture with seeded weights; this test needs only samkit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from samkit.testing.goldens import Diff, compare

GOLDENS = Path(__file__).parent / "goldens" / "core"


@pytest.fixture(scope="module")
def diffs() -> list[Diff]:
    return compare(GOLDENS)


def test_every_case_was_replayed(diffs: list[Diff]) -> None:
    names = {d.case.split("/", 1)[1] for d in diffs if not d.case.startswith("forward")}
    assert {
        "point",
        "points_pos_neg",
        "box",
        "box_points",
        "mask_input",
        "logits",
        "batched_boxes",
        "batched_points",
        "embedding",
    } <= names
    assert {"forward/0", "forward/1"} <= {d.case for d in diffs}


def test_iou_predictions_within_1e_4(diffs: list[Diff]) -> None:
    assert max(d.iou_max for d in diffs) < 1e-4, [d for d in diffs if d.iou_max >= 1e-4]


def test_low_res_logits_within_1e_3(diffs: list[Diff]) -> None:
    bad = [d for d in diffs if d.logits_max >= 1e-3]
    assert not bad, bad


def test_masks_differ_on_at_most_0_1_percent(diffs: list[Diff]) -> None:
    bad = [d for d in diffs if d.mask_frac > 1e-3]
    assert not bad, bad

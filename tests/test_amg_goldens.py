"""AMG parity with Meta's SamAutomaticMaskGenerator, replayed from committed goldens.

`tools/make_amg_goldens.py` ran the official generator (throwaway venv) with briefly trained
samkit_tiny weights on two synthetic scenes, with crops, NMS and small-region cleanup active.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from samkit.testing.amg_goldens import AmgDiff, compare

GOLDENS = Path(__file__).parent / "goldens"


@pytest.fixture(scope="module")
def diffs() -> list[AmgDiff]:
    return compare(GOLDENS)


def test_all_configs_and_images_replayed(diffs: list[AmgDiff]) -> None:
    assert {d.name for d in diffs} == {
        "crops_cleanup/0",
        "crops_cleanup/1",
        "no_crops/0",
        "no_crops/1",
    }
    assert all(d.official >= 50 for d in diffs), "goldens must hold many masks"


def test_every_mask_matched_both_ways(diffs: list[AmgDiff]) -> None:
    bad = [d for d in diffs if d.unmatched_official or d.unmatched_ours or d.official != d.ours]
    assert not bad, bad


def test_scores_within_1e_3(diffs: list[AmgDiff]) -> None:
    assert max(d.score_max for d in diffs) < 1e-3

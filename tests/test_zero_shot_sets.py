"""tools/zero_shot_sets.py, which makes the synthetic sets the guide's zero-shot figures for the
bundled model come from: both sets are read by the evals as they are, and they are right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samkit.data import make_scene
from samkit.eval.edges import find_items, read_boundaries
from samkit.eval.proposals import proposal_recall, read_ground_truth

pytest.importorskip("pycocotools")
TOOL = Path(__file__).resolve().parents[1] / "tools" / "zero_shot_sets.py"


def make(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), str(out), *options], capture_output=True, text=True
    )


def test_the_sets_are_what_the_evals_read_and_agree_with_the_scenes(tmp_path: Path) -> None:
    out = tmp_path / "zs"
    done = make(out, "--edge-scenes", "2", "--proposal-scenes", "2", "--size", "64")
    assert done.returncode == 0, done.stderr
    scenes = [make_scene(3, i, 64) for i in range(2)]
    n_objects = sum(len(s.objects) for s in scenes)
    assert f"proposals: {n_objects} objects" in done.stdout

    items = find_items(out / "edges")
    assert [i.stem for i in items] == ["s000", "s001"]
    for item, scene in zip(items, scenes, strict=True):
        objects, with_parts = read_boundaries(item.ground_truth)
        assert objects.any() and (with_parts >= objects).all()  # annotator 2 adds parts
        part = next((o.mask for o in scene.objects if o.kind == "part"), None)
        assert part is None or with_parts.sum() > objects.sum()

    data = read_ground_truth(out / "proposals" / "instances.json")
    kinds = {c["id"]: (c["name"], c["frequency"]) for c in data["categories"]}
    assert sorted(kinds.values()) == [("group", "r"), ("object", "f"), ("part", "c")]
    assert len(data["annotations"]) == n_objects
    # The ground truth's own masks, as proposals, recall every object at every IoU.
    proposals = [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in data["annotations"]
    ]
    rows = proposal_recall(data, proposals, [1000])
    overall = next(r for r in rows if r.group == "all")
    assert overall.objects == n_objects and overall.ar(1000) == pytest.approx(1.0)
    first = scenes[0].objects[0]
    stored = data["annotations"][0]
    assert stored["area"] == int(first.mask.sum()) and stored["image_id"] == 1


def test_refuses_a_folder_with_files_and_bad_counts(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("keep me")
    refused = make(tmp_path)
    assert refused.returncode == 2 and "is not empty" in refused.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"
    bad = make(tmp_path / "new", "--edge-scenes", "0")
    assert bad.returncode == 2 and ">= 1" in bad.stderr and not (tmp_path / "new").exists()

"""Evaluation: confidence intervals, per-group summaries, the oracle, outputs, `samkit eval`."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.eval.clicks import random_click, run_protocol
from samkit.eval.report import Scores, mean_ci, summarize, to_markdown, write_csv
from samkit.modeling import Sam


def test_mean_ci_by_hand() -> None:
    mean, half = mean_ci(np.array([0.0, 1.0]))
    assert mean == 0.5
    assert half == pytest.approx(1.959964 * math.sqrt(0.5) / math.sqrt(2))  # sd 0.7071, n 2
    _, narrow = mean_ci(np.tile([0.0, 1.0], 50))
    assert narrow < half / 5
    assert mean_ci(np.array([0.7])) == (0.7, 0.0)


def test_summarize_groups_and_clicks() -> None:
    ious = np.array([[0.2, 0.5, 0.9], [0.4, 0.7, 0.9], [1.0, 1.0, 1.0]])
    scores = Scores(ious, np.array([0.5, 0.5, 1.0]), ["a", "a", "b"])
    rows = summarize(scores, [1, 3])
    assert [(r.group, r.n) for r in rows] == [("all", 3), ("a", 2), ("b", 1)]
    assert rows[1].miou[1][0] == pytest.approx(0.3) and rows[1].miou[3][0] == pytest.approx(0.9)
    assert rows[0].oracle_first[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"within 1\.\.3"):
        summarize(scores, [5])
    table = to_markdown(rows)
    assert table.splitlines()[0] == "| group | n | mIoU@1 | mIoU@3 | oracle@1 |"
    assert "| a | 2 | 0.300 ± " in table


def test_csv_round_trip(tmp_path: Path) -> None:
    scores = Scores(np.array([[0.2], [0.4]]), np.array([0.3, 0.5]), ["x", "y"])
    write_csv(summarize(scores, [1]), tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["group"] for r in rows] == ["all", "x", "y"]
    assert float(rows[0]["miou@1"]) == pytest.approx(0.3)


def test_oracle_is_at_least_the_chosen_mask(tiny_sam: Sam) -> None:
    image = np.full((64, 64, 3), 40, np.uint8)
    targets = np.zeros((2, 64, 64), bool)
    targets[0, 10:30, 10:30] = True
    targets[1, 35:60, 20:50] = True
    image[targets[0]] = (250, 30, 30)
    result = run_protocol(tiny_sam, image, targets, 2)
    assert result.ious.shape == (2, 2)
    assert np.all(result.oracle_first >= result.ious[:, 0] - 1e-12)


def test_random_click_lands_inside() -> None:
    target = np.zeros((20, 30), bool)
    target[5:8, 10:25] = True
    rng = np.random.default_rng(0)
    clicks = {random_click(target, rng) for _ in range(50)}
    assert len(clicks) > 5 and all(target[y, x] for x, y in clicks)


def samkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "samkit.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_eval_synthetic(tmp_path: Path) -> None:
    r = samkit(
        "eval",
        "--model",
        "samkit_tiny",
        "--synthetic",
        "3",
        "--n",
        "2",
        "--size",
        "64",
        "--clicks",
        "1,3",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    assert "| all |" in r.stdout and "mIoU@3" in r.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"results.md", "results.csv", "miou.png"}
    assert Image.open(tmp_path / "miou.png").size == (640, 420)


def test_cli_eval_coco_grouped(tmp_path: Path) -> None:
    from samkit.data import make_scene
    from samkit.io.coco import CocoWriter

    scene = make_scene(4, 0, size=64)
    Image.fromarray(scene.image).save(tmp_path / "0.png")
    writer = CocoWriter(categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    masks = scene.masks
    half = len(masks) // 2
    for cat, part in ((1, masks[:half]), (2, masks[half:])):
        writer.add_image("0.png", 64, 64, [{"segmentation": m} for m in part], category_id=cat)
    writer.write(tmp_path / "instances.json")
    r = samkit(
        "eval",
        "--model",
        "samkit_tiny",
        "--coco",
        str(tmp_path / "instances.json"),
        "--images",
        str(tmp_path),
        "--group-by",
        "category_id",
        "--clicks",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "| 1 |" in r.stdout and "| 2 |" in r.stdout
    r = samkit("eval", "--model", "samkit_tiny", "--coco", str(tmp_path / "instances.json"))
    assert r.returncode == 1 and "--images" in r.stderr

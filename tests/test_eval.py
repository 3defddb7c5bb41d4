"""Evaluation: confidence intervals, per-group summaries, the oracle, outputs, `samkit eval`
on one dataset and on several."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.cli.arguments import short_names
from samkit.eval.clicks import random_click, run_protocol
from samkit.eval.report import (
    LEGEND,
    Scores,
    dataset_summary,
    mean_ci,
    results_markdown,
    summarize,
    to_markdown,
    write_csv,
)
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


# -- the legend and several datasets ---------------------------------------------------------
def test_legend_under_the_table_and_the_summary_table() -> None:
    a = summarize(Scores(np.array([[0.2], [0.4]]), np.array([0.3, 0.5]), ["x", "y"]), [1])
    b = summarize(Scores(np.array([[1.0]]), np.array([1.0]), ["x"]), [1])
    one = results_markdown({"a": a})
    assert one == to_markdown(a) + f"\n{LEGEND}\n"  # the table as it was, then the legend
    assert "predicted IoU" in LEGEND and "best of its 3 masks" in LEGEND
    several = results_markdown({"a": a, "b": b})
    lines = several.splitlines()
    assert lines[:4] == [
        "| dataset | n | mIoU@1 | oracle@1 |",
        "|---|---|---|---|",
        "| a | 2 | 0.300 ± 0.196 | 0.400 ± 0.196 |",  # sd 0.141 of two: ± 1.96 * 0.141 / √2
        "| b | 1 | 1.000 ± 0.000 | 1.000 ± 0.000 |",
    ]
    assert "## a\n\n" + to_markdown(a) in several and "## b\n\n" + to_markdown(b) in several
    assert [r.group for r in dataset_summary({"a": a, "b": b})] == ["a", "b"]


def test_short_names_tell_datasets_apart() -> None:
    assert short_names(["data/x/a", "data/y/b/"], "--sa1b") == ["a", "b"]
    assert short_names(["one/val", "two/val", "two/test"], "--sa1b") == [
        "one/val",
        "two/val",
        "two/test",
    ]
    with pytest.raises(ValueError, match="given twice"):
        short_names(["d/a", "d/../d/a"], "--coco")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_eval_several_datasets_equals_each_alone(
    tmp_path: Path, write_sa1b_scenes: Any, capsys: pytest.CaptureFixture
) -> None:
    first = write_sa1b_scenes(tmp_path / "first" / "val", seed=4, n=2, size=64)
    second = write_sa1b_scenes(tmp_path / "second" / "val", seed=5, n=1, size=64)
    # A random first click: each dataset must start from the seed, as a run on it alone does.
    common = ["eval", "--model", "samkit_tiny", "--clicks", "1,2", "--random-first", "7"]
    alone = {}
    for name, folder in (("first", first), ("second", second)):
        assert main([*common, "--sa1b", str(folder), "--out", str(tmp_path / name)]) == 0
        (alone[name],) = _csv_rows(tmp_path / name / "results.csv")
    capsys.readouterr()
    out = tmp_path / "both"
    assert main([*common, "--sa1b", str(first), "--sa1b", str(second), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"results.md", "results.csv", "miou.png"}
    assert (out / "results.md").read_text() == printed
    rows = _csv_rows(out / "results.csv")
    assert [(r["dataset"], r["group"]) for r in rows] == [
        ("first/val", "all"),
        ("second/val", "all"),
    ]
    for row, name in zip(rows, ("first", "second"), strict=True):
        assert {k: v for k, v in row.items() if k != "dataset"} == alone[name]
    assert alone["first"]["miou@1"] != alone["second"]["miou@1"]  # the rows are not one
    summary = printed.splitlines()[2:4]
    assert summary[0].startswith(f"| first/val | {alone['first']['n']} | ")
    assert summary[1].startswith(f"| second/val | {alone['second']['n']} | ")
    assert "## first/val" in printed and "## second/val" in printed
    assert Image.open(out / "miou.png").size == (640, 420)


def test_cli_eval_several_coco_files_and_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from samkit.data import make_scene
    from samkit.io.coco import CocoWriter

    scene = make_scene(4, 0, size=64)
    Image.fromarray(scene.image).save(tmp_path / "0.png")
    for name, masks in (("a.json", scene.masks[:2]), ("b.json", scene.masks[2:])):
        writer = CocoWriter(categories=[{"id": 1, "name": "thing"}])
        writer.add_image("0.png", 64, 64, [{"segmentation": m} for m in masks], category_id=1)
        writer.write(tmp_path / name)
    a, b, images = str(tmp_path / "a.json"), str(tmp_path / "b.json"), str(tmp_path)
    common = ["eval", "--model", "samkit_tiny", "--clicks", "1", "--group-by", "category_id"]
    assert main([*common, "--coco", a, "--coco", b, "--images", images]) == 0  # one --images
    printed = capsys.readouterr().out
    assert "| a.json | 2 |" in printed and f"| b.json | {len(scene.masks) - 2} |" in printed
    assert printed.count("| 1 |") == 2  # each file's category table

    (tmp_path / "empty").mkdir()
    cases = [
        (
            ["--coco", a, "--coco", b, *["--images", images] * 3],
            "got 2 --coco and 3 --images",
        ),
        (["--coco", a, "--coco", b], "--coco needs --images"),
        (["--sa1b", str(tmp_path / "empty"), "--sa1b", images], "no image with annotations"),
        (["--coco", a, "--coco", a, "--images", images], "given twice"),
    ]
    for argv, message in cases:
        assert main([*common, *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    with pytest.raises(SystemExit):  # argparse: --sa1b and --coco are one or the other
        main([*common, "--sa1b", images, "--coco", a, "--images", images])

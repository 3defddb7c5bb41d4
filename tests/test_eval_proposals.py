"""samkit.eval.proposals and `samkit eval proposals`: object proposals scored by mask AR@k.

The ground truth of the metric tests is made of squares whose pixel counts are known, so every
recall there is worked out by hand: a proposal of IoU 0.81 with its object passes the IoU
thresholds 0.50 ... 0.80 (7 of 10) and so scores AR 0.7."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit import SamAutomaticMaskGenerator
from samkit.cli import main
from samkit.eval.proposals import (
    check_ground_truth,
    generate_proposals,
    locate_images,
    plot_png,
    proposal_recall,
    read_ground_truth,
    to_markdown,
    write_csv,
)
from samkit.interrupt import Interrupted, raise_on_signal
from samkit.masks import encode_coco_rle

S = 128  # px, square images of the metric tests


def square(x: int, y: int, side: int, size: int = S) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y : y + side, x : x + side] = True
    return mask


def rle(mask: np.ndarray) -> dict[str, Any]:
    out = encode_coco_rle(mask)
    counts = out["counts"]
    return {
        "size": [int(v) for v in out["size"]],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }


def instances(objects: list[tuple[int, np.ndarray]], frequencies: str = "fcr") -> dict[str, Any]:
    """A COCO dict of one S x S image holding `objects` ((category id, mask) pairs); category
    i + 1 has LVIS frequency frequencies[i]."""
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "segmentation": rle(m)}
        for i, (c, m) in enumerate(objects)
    ]
    categories = [{"id": i + 1, "name": f"c{i}", "frequency": f} for i, f in enumerate(frequencies)]
    image = {"id": 1, "file_name": "a.png", "width": S, "height": S}
    return {"images": [image], "annotations": anns, "categories": categories}


def proposals(masks: list[np.ndarray], scores: list[float] | None = None) -> list[dict[str, Any]]:
    scores = scores or [1.0 - i / 100 for i in range(len(masks))]
    return [
        {"image_id": 1, "segmentation": rle(m), "score": s}
        for m, s in zip(masks, scores, strict=True)
    ]


def ar_row(rows: list[Any], group: str) -> Any:
    (row,) = [r for r in rows if r.group == group]
    return row


def ar(rows: list[Any], group: str, budget: int) -> float:
    return float(ar_row(rows, group).ar(budget))


# Small (400 px), medium (1600 px) and large (10000 px) squares of categories 1, 2, 3.
SMALL, MEDIUM, LARGE = square(2, 2, 20), square(30, 2, 40), square(10, 26, 100)
# IoU with MEDIUM: 36² / 40² = 0.81.
MEDIUM_SHRUNK = square(32, 4, 36)


# -- the metric ------------------------------------------------------------------------------
def test_the_objects_themselves_score_one_at_every_budget() -> None:
    gt = instances([(1, SMALL), (2, MEDIUM), (3, LARGE)])
    rows = proposal_recall(gt, proposals([LARGE, SMALL, MEDIUM]))
    assert [r.group for r in rows] == [
        "all", "small", "medium", "large", "frequent", "common", "rare"
    ]  # fmt: skip
    for row in rows:
        assert row.objects == (3 if row.group == "all" else 1)
        for k in (10, 100, 1000):
            assert row.ar(k) == pytest.approx(1.0)
            np.testing.assert_allclose(row.recall[k], np.ones(10))


def test_recall_by_hand_sizes_and_frequencies() -> None:
    crowd = {"id": 9, "image_id": 1, "category_id": 1, "segmentation": rle(square(110, 2, 8))}
    gt = instances([(1, SMALL), (2, MEDIUM), (3, LARGE)])
    gt["annotations"].append({**crowd, "iscrowd": 1})  # not an object: not counted
    rows = proposal_recall(gt, proposals([SMALL, MEDIUM_SHRUNK, LARGE]), [1, 2, 3])
    assert [(r.group, r.objects) for r in rows] == [
        ("all", 3), ("small", 1), ("medium", 1), ("large", 1),
        ("frequent", 1), ("common", 1), ("rare", 1),
    ]  # fmt: skip
    # IoU 0.81: found at the thresholds 0.50 ... 0.80, missed at 0.85, 0.90, 0.95.
    assert ar(rows, "medium", 3) == ar(rows, "common", 3) == pytest.approx(0.7)
    np.testing.assert_allclose(ar_row(rows, "all").recall[3], [1] * 7 + [2 / 3] * 3)
    assert ar(rows, "all", 3) == pytest.approx((7 * 3 + 3 * 2) / 30)  # 0.9
    for group in ("small", "large", "frequent", "rare"):
        assert ar(rows, group, 3) == pytest.approx(1.0)
    # Budgets take the best-scored proposals first: SMALL, then MEDIUM_SHRUNK, then LARGE.
    assert ar(rows, "all", 1) == pytest.approx(1 / 3)
    assert ar(rows, "all", 2) == pytest.approx((10 + 7) / 30)
    assert ar(rows, "large", 2) == 0.0 and ar(rows, "rare", 2) == 0.0


def test_half_the_objects_recall_half() -> None:
    masks = [square(4 + 30 * (i % 4), 4 + 30 * (i // 4), 24) for i in range(8)]
    gt = instances([(1 + i % 3, m) for i, m in enumerate(masks)])
    rows = proposal_recall(gt, proposals(masks[::2]))
    assert ar(rows, "all", 1000) == pytest.approx(0.5)
    assert ar(rows, "small", 1000) == pytest.approx(0.5)  # 576 px: all small
    assert math.isnan(ar(rows, "large", 1000)) and ar_row(rows, "large").objects == 0
    # Categories 1, 2, 3, 1, 2, 3, 1, 2; found: 0, 2, 4, 6 -> categories 1, 3, 2, 1.
    assert ar(rows, "frequent", 1000) == pytest.approx(2 / 3)
    assert ar(rows, "common", 1000) == pytest.approx(1 / 3)
    assert ar(rows, "rare", 1000) == pytest.approx(1 / 2)


def test_budgets_take_the_best_scored_proposals_of_each_image() -> None:
    masks = [square(4 + 24 * i, 50, 20) for i in range(5)]
    gt = instances([(1, m) for m in masks], frequencies="f")
    junk = [square(4 + 24 * i, 100, 20) for i in range(5)]  # overlapping nothing
    ranked = proposals([*junk, *masks], [0.9 + i / 100 for i in range(5)] + [0.5] * 5)
    rows = proposal_recall(gt, ranked, [1, 2, 5, 10])
    for k in (1, 2, 5):
        assert ar(rows, "all", k) == 0.0  # the junk is scored higher
    assert ar(rows, "all", 10) == pytest.approx(1.0)
    rows = proposal_recall(gt, proposals(masks), [1, 2, 3])
    for k in (1, 2, 3):  # fewer proposals than objects: recall <= k / 5
        assert ar(rows, "all", k) == pytest.approx(k / 5)


def test_no_proposals_recall_nothing_and_categories_are_ignored() -> None:
    gt = instances([(1, SMALL), (2, MEDIUM)], frequencies="fc")
    rows = proposal_recall(gt, [])
    assert ar(rows, "all", 1000) == 0.0 and math.isnan(ar(rows, "rare", 1000))
    wrong_class = [{**p, "category_id": 77} for p in proposals([SMALL, MEDIUM])]
    assert ar(proposal_recall(gt, wrong_class), "all", 10) == pytest.approx(1.0)
    gt.pop("categories")  # plain COCO without frequencies: size groups only
    rows = proposal_recall(gt, proposals([MEDIUM]), image_ids=[1])
    assert [r.group for r in rows] == ["all", "small", "medium", "large"]
    assert ar(rows, "all", 1000) == pytest.approx(0.5)


def test_proposal_recall_rejects_bad_input() -> None:
    gt = instances([(1, SMALL)])
    good = proposals([SMALL])
    cases: list[tuple[Any, Any, str]] = [
        ([{**good[0], "image_id": 2}], {}, "'image_id' 2 is not evaluated"),
        ([{k: v for k, v in good[0].items() if k != "score"}], {}, r"missing key.*'score'"),
        ([{**good[0], "score": math.nan}], {}, "'score'"),
        (proposals([square(0, 0, 4, size=64)]), {}, r"does not match the image \[128, 128\]"),
        (good, {"budgets": [0, 10]}, "budgets must be"),
        (good, {"image_ids": [5]}, r"image_ids \[5\] are not images"),
    ]
    for props, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            proposal_recall(gt, props, **kwargs)
    before = json.dumps(gt)
    proposal_recall(gt, good)
    assert json.dumps(gt) == before  # the caller's ground truth is left alone


# -- ground truth files ----------------------------------------------------------------------
def test_lvis_style_files_polygons_and_missing_fields(tmp_path: Path) -> None:
    small = [20.0, 30.0, 30.0, 30.0, 30.0, 40.0, 20.0, 40.0]  # COCO polygon of pixels 20..29
    gt = {
        "images": [{"id": 7, "coco_url": "http://x/val2017/000000000007.jpg", "width": 64,
                    "height": 48}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": [small]}],
        "categories": [{"id": 3, "name": "mug", "frequency": "r"}],
    }  # fmt: skip
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(gt))
    data = read_ground_truth(path)
    assert data["images"][0]["file_name"] == "val2017/000000000007.jpg"
    mask = np.zeros((48, 64), dtype=bool)
    mask[30:40, 20:30] = True
    props = [{"image_id": 7, "segmentation": mask, "score": 0.5}]  # an HxW mask works too
    rows = proposal_recall(data, props)
    assert ar(rows, "all", 1000) == pytest.approx(1.0) and ar(rows, "rare", 1000) == 1.0
    (tmp_path / "val2017").mkdir()
    with pytest.raises(ValueError, match=r"000000000007\.jpg does not exist"):
        locate_images(data, [7], tmp_path)
    Image.new("RGB", (64, 47)).save(tmp_path / "val2017" / "000000000007.jpg")
    with pytest.raises(ValueError, match="is 64x47 but the JSON says 64x48"):
        locate_images(data, [7], tmp_path)


def test_check_ground_truth_names_what_is_wrong() -> None:
    def broken(change: str) -> dict[str, Any]:
        gt = instances([(1, SMALL)])
        img, ann, cat = gt["images"][0], gt["annotations"][0], gt["categories"][0]
        if change == "no file_name":
            del img["file_name"]
        elif change == "frequency":
            cat["frequency"] = "often"
        elif change == "box":
            ann["segmentation"] = [[1, 2, 3, 4]]
        elif change == "rle size":
            ann["segmentation"] = rle(square(0, 0, 4, size=64))
        elif change == "image":
            ann["image_id"] = 3
        elif change == "duplicate":
            gt["annotations"].append(dict(ann))
        return gt

    cases = {
        "no file_name": r"images\[0\]: missing key 'file_name' \(or LVIS's 'coco_url'\)",
        "frequency": "'frequency' must be 'f', 'c' or 'r'",
        "box": "at least 3 points",
        "rle size": r"RLE size \[64, 64\] does not match the image \[128, 128\]",
        "image": "'image_id' 3 is not in 'images'",
        "duplicate": "duplicate annotation id 1",
    }
    for change, message in cases.items():
        with pytest.raises(ValueError, match=message):
            check_ground_truth(broken(change), "gt.json")


def test_reports(tmp_path: Path) -> None:
    gt = instances([(1, SMALL), (2, MEDIUM)], frequencies="fc")
    rows = proposal_recall(gt, proposals([SMALL, MEDIUM_SHRUNK]), [1, 10])
    table = to_markdown(rows)
    assert table.splitlines()[0] == "| group | objects | AR@1 | AR@10 |"
    assert "| all | 2 | 0.500 | 0.850 |" in table and "| large | 0 | n/a | n/a |" in table
    write_csv(rows, tmp_path / "r.csv")
    lines = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    medium = next(r for r in lines if r["group"] == "medium" and r["budget"] == "10")
    assert medium["AR"] == "0.7000" and medium["recall@0.80"] == "1.0000"
    assert medium["recall@0.85"] == "0.0000"
    assert next(r for r in lines if r["group"] == "rare")["AR"] == ""  # no rare objects
    plot_png(rows, tmp_path / "r.png")
    with Image.open(tmp_path / "r.png") as img:
        assert img.size == (640, 420) and len(img.getcolors(10**6)) > 2  # axes and lines


# -- proposals from the generator, and the command ------------------------------------------
SIZE = 96


@pytest.fixture
def shapes(tmp_path: Path) -> dict[str, Any]:
    """A COCO folder of 2 flat-coloured images (a rectangle, a disc, a small square each)."""
    folder = tmp_path / "images"
    folder.mkdir()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, anns = [], []
    for i in range(2):
        rect = (xx >= 8 + 6 * i) & (xx < 38 + 6 * i) & (yy >= 10) & (yy < 32)
        disc = (xx - 66 + 4 * i) ** 2 + (yy - 62) ** 2 <= 14**2
        small = (xx >= 70) & (xx < 80) & (yy >= 8) & (yy < 18)
        image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
        colours = [(230, 40, 40), (40, 60, 220), (240, 220, 30)]
        for category, (mask, colour) in enumerate(zip([rect, disc, small], colours, strict=True)):
            image[mask] = colour
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": category + 1,
                 "segmentation": rle(mask), "area": int(mask.sum()), "iscrowd": 0}
            )  # fmt: skip
        Image.fromarray(image).save(folder / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": SIZE, "height": SIZE})
    cats = [{"id": c + 1, "name": n, "frequency": f} for c, (n, f) in enumerate(["rf", "dc", "sr"])]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return {"path": path, "images": folder}


def generator(**options: Any) -> SamAutomaticMaskGenerator:
    settings = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.9}
    return SamAutomaticMaskGenerator(
        samkit.load("samkit_default"), points_per_side=6, output_mode="coco_rle",
        **{**settings, **options},
    )  # fmt: skip


def test_generate_proposals_keeps_the_best_of_each_image(shapes: dict[str, Any]) -> None:
    amg = generator()
    records = [r for r in amg.generate(str(shapes["images"] / "im0.png")) if r["area"] > 0]
    best = sorted(((r["predicted_iou"] + r["stability_score"]) / 2 for r in records), reverse=True)
    found = generate_proposals(amg, [(1, shapes["images"] / "im0.png")], max_proposals=5)
    assert len(records) > 5
    assert [p["score"] for p in found] == pytest.approx(best[:5])
    assert {p["image_id"] for p in found} == {1} and found[0]["segmentation"]["size"] == [96, 96]


def test_generate_proposals_stops_cleanly_on_sigint(shapes: dict[str, Any]) -> None:
    pipe = shapes["images"] / "pipe.png"
    os.mkfifo(pipe)  # opening it waits for a writer that never comes: the signal lands there
    wchan = Path(f"/proc/self/task/{threading.main_thread().native_id}/wchan")
    if not wchan.exists():
        pytest.skip("needs Linux's /proc/PID/task/TID/wchan to see where the thread waits")

    def interrupt_when_blocked() -> None:
        for _ in range(6000):
            if wchan.read_text().strip() == "wait_for_partner":
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)
        with open(pipe, "wb"):  # never blocked there: let the run go on (and the test fail)
            pass

    threading.Thread(target=interrupt_when_blocked, daemon=True).start()
    images = [(1, shapes["images"] / "im0.png"), (2, pipe), (3, pipe)]
    with pytest.raises(Interrupted) as caught, raise_on_signal():
        generate_proposals(generator(), images)
    assert caught.value.exit_code == 130
    assert caught.value.done == "1 image done, 2 left; no results were written"


def test_cli_end_to_end(
    shapes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["eval", "proposals", str(shapes["path"]), str(shapes["images"])]
    assert main([*argv, "--points-per-side", "8", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    settings = "points_per_side 8, crop_n_layers 1, crop_n_points_downscale_factor 2"
    assert f"for 2 images (samkit_default: {settings}, pred_iou_thresh 0" in printed
    assert "| group | objects | AR@10 | AR@100 | AR@1000 |" in printed
    values = {}
    for line in printed.splitlines()[3:]:
        group, objects, *cells = (c.strip() for c in line.strip("|").split("|"))
        values[group] = (int(objects), [float(c) for c in cells if c != "n/a"])
    assert values["all"][0] == 6 and values["rare"][0] == 2 and values["large"][0] == 0
    for _, ars in values.values():
        assert all(0.0 <= v <= 1.0 for v in ars)
    assert values["all"][1][-1] > 0.8  # flat shapes: the bundled model's home ground
    assert sorted(p.name for p in out.iterdir()) == ["recall.png", "results.csv", "results.md"]
    assert "| all | 6 |" in (out / "results.md").read_text()
    assert (
        len(list(csv.DictReader((out / "results.csv").read_text().splitlines()))) == 7 * 3
    )  # groups x budgets


def test_cli_crops_find_a_small_object_the_whole_image_grid_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One grid point (48, 48) on the grey background; the layer of 2x2 crops puts one point at
    # each crop's centre, (32, 32) among them, inside the small square.
    small = square(28, 28, 9, SIZE)
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    image[small] = (240, 220, 30)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": SIZE, "height": SIZE}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(small)}],
        "categories": [{"id": 1, "name": "square"}],
    }
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps(data))
    argv = ["eval", "proposals", str(coco), str(folder), "--points-per-side", "1"]
    argv += ["--crop-n-points-downscale-factor", "1", "--budgets", "10", "--no-progress"]

    def recall(*options: str) -> float:
        assert main([*argv, *options]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if "| all |" in line)
        return float(row.strip("|").split("|")[2])

    with_crops, without = recall(), recall("--crop-n-layers", "0")
    assert with_crops > 0.9 and without < 0.5, (with_crops, without)


def test_cli_checks_inputs_before_loading_the_model(
    shapes: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(samkit, "load", no_model)
    coco, images = str(shapes["path"]), str(shapes["images"])
    out = ["--out", str(tmp_path / "out")]
    crowds = tmp_path / "crowds.json"
    data = json.loads(shapes["path"].read_text())
    crowds.write_text(json.dumps({**data, "annotations": [
        {**a, "iscrowd": 1} for a in data["annotations"]
    ]}))  # fmt: skip
    cases = [
        ([str(tmp_path / "none.json"), images, *out], "none.json: no such file"),
        ([coco, str(tmp_path / "none"), *out], "none: no such folder"),
        ([str(crowds), images, *out], "no image has an object"),
        ([coco, images, *out, "--device", "tpu:0"], "is not a device name"),
    ]
    (shapes["images"] / "im1.png").unlink()
    cases.append(([coco, images, *out], "im1.png does not exist"))
    for argv, message in cases:
        assert main(["eval", "proposals", *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    with pytest.raises(AssertionError, match="the model was loaded"):  # im0 alone is checked
        main(["eval", "proposals", coco, images, "--limit", "1", *out])
    Image.new("RGB", (SIZE + 1, SIZE)).save(shapes["images"] / "im1.png")
    assert main(["eval", "proposals", coco, images, *out]) == 1
    assert "is 97x96 but the JSON says 96x96" in capsys.readouterr().err
    for option in (["--points-per-side", "0"], ["--box-nms-thresh", "1.5"], ["--budgets", "0"]):
        with pytest.raises(SystemExit) as usage:  # argparse: exit 2 and the allowed range
            main(["eval", "proposals", coco, images, *option])
        assert usage.value.code == 2
        assert f"argument {option[0]}: expected" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

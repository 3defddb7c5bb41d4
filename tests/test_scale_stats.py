"""`samkit stats` on SA-1B folders whose statistics are known by construction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.io.sa1b import write_sa1b
from samkit.scale.stats import collect_stats, per_image_counts, summary


def record(mask: np.ndarray) -> dict[str, object]:
    ys, xs = np.nonzero(mask)
    return {
        "segmentation": mask,
        "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
        "area": int(mask.sum()),
        "predicted_iou": 0.9,
        "point_coords": [[0.0, 0.0]],
        "crop_box": [0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])],
        "stability_score": 0.9,
    }


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def write_folder(root: Path) -> None:
    """Three images: a centred quarter-area square and a corner square; no masks; 12 masks."""
    h, w = 100, 200
    centred = box_mask(h, w, 25, 75, 50, 150)  # area 1/4 of the image: size sqrt(1/4) = 0.5
    corner = box_mask(h, w, 0, 10, 0, 20)  # centre (10, 5) -> (0.05, 0.05)
    meta = [("europe", "high"), ("africa", "low"), ("europe", "upper_middle")]
    layouts = [[centred, corner], [], [centred] * 12]
    for i, (masks, (region, income)) in enumerate(zip(layouts, meta, strict=True)):
        info = {"image_id": i, "width": w, "height": h, "file_name": f"sa_{i}.jpg"}
        info.update(region=region, income_group=income)
        write_sa1b(root / f"sa_{i}.json", [record(m) for m in masks], image=info)
    (root / "manifest.json").write_text("{}")  # an engine manifest is not an image


def test_statistics_known_by_construction(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    stats = collect_stats(tmp_path)
    assert (stats.images, stats.masks) == (3, 14)
    assert stats.masks_per_image == [2, 0, 12]
    assert dict(per_image_counts(stats)) == {
        "0": 1,
        "1-10": 1,
        "11-50": 1,
        "51-100": 0,
        "101-200": 0,
        ">200": 0,
    }
    assert stats.sizes.count(0.5) == 13
    assert stats.concentricity[0] == pytest.approx(0.0)
    assert stats.concentricity[1] == pytest.approx(np.hypot(0.45, 0.45))
    assert stats.centres[16, 16] == 13 and stats.centres[1, 1] == 1
    assert stats.groups["region"] == {"europe": 2, "africa": 1}
    assert [Path(f).name for f, _ in stats.unreadable] == ["notes.json"]
    s = summary(stats)
    assert s["relative_mask_size_bins"]["0.50-0.60"] == 13
    assert s["groups"]["income_group"] == {"high": 1, "low": 1, "upper_middle": 1}


def test_stats_command_writes_markdown_and_plots(tmp_path: Path) -> None:
    write_folder(tmp_path / "sa1b")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "samkit.cli",
            "stats",
            str(tmp_path / "sa1b"),
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "| images | 3 |" in r.stdout and "| masks | 14 |" in r.stdout
    assert "| images by region | images |" in r.stdout and "| europe | 2 |" in r.stdout
    report = tmp_path / "report"
    assert (report / "stats.md").read_text() == r.stdout
    assert json.loads((report / "stats.json").read_text())["masks"] == 14
    for name in ("masks_per_image", "mask_size", "concentricity", "centres", "groups_region"):
        with Image.open(report / f"{name}.png") as img:
            assert img.size[0] > 100 and img.getextrema() != ((255, 255),) * 3  # drawn on


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_stats(tmp_path / "nope")

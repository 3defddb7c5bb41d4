"""`samkit amg` end to end: formats, resume after a kill, a corrupt image among good ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.rle import decode_coco_rle
from samkit.runner import collect_inputs

# Loose filters so the seeded tiny model yields masks; few points keep it fast.
FAST = [
    "--model",
    "samkit_tiny",
    "--points-per-side",
    "6",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--no-progress",
]


def amg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "samkit.cli", "amg", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_images(folder: Path, n: int, size: tuple[int, int] = (60, 80)) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        img[10:40, 20:50] = rng.integers(0, 255, 3)
        paths.append(sub / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def test_overlays_show_every_mask(tmp_path: Path) -> None:
    (image_path,) = make_images(tmp_path / "in", 1)
    r = amg(str(image_path), "--out", str(tmp_path / "out"), "--overlays", *FAST)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "out" / "img0.json").read_text())
    assert data["annotations"]
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / "img0.png"))
    original = np.asarray(Image.open(image_path))
    assert overlay.shape == original.shape
    changed = (overlay != original).any(axis=-1)
    covered = np.zeros(changed.shape, dtype=bool)
    for ann in data["annotations"]:
        covered |= decode_coco_rle(ann["segmentation"])
    assert np.array_equal(changed, covered)  # tinted exactly where some mask is


@pytest.mark.parametrize("fmt", ["sa1b", "coco", "png", "yolo"])
def test_formats(tmp_path: Path, fmt: str) -> None:
    make_images(tmp_path / "in", 2)
    r = amg(str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--format", fmt, *FAST)
    assert r.returncode == 0, r.stderr
    assert "2 done, 0 skipped" in r.stdout
    out = tmp_path / "out"
    if fmt == "sa1b":
        data = json.loads((out / "a" / "img1.json").read_text())
        assert data["image"]["width"] == 80 and data["annotations"]
        assert set(data["annotations"][0]) >= {"segmentation", "bbox", "area", "predicted_iou"}
    elif fmt == "coco":
        data = json.loads((out / "annotations.json").read_text())
        assert len(data["images"]) == 2 and data["annotations"]
    elif fmt == "png":
        assert (out / "b" / "img0" / "metadata.csv").exists()
        assert (out / "b" / "img0" / "0.png").exists() and (
            out / "b" / "img0" / "labels.png"
        ).exists()
    else:
        lines = (out / "a" / "img1.txt").read_text().splitlines()
        assert lines and all(len(line.split()) >= 7 for line in lines)


def test_corrupt_image_is_reported_and_skipped(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 2)
    (tmp_path / "in" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = amg(str(tmp_path / "in"), "--out", str(tmp_path / "out"), *FAST)
    assert r.returncode == 1
    assert "2 done" in r.stdout and "1 failed" in r.stdout
    assert "broken.png" in r.stderr
    failures = [
        json.loads(x) for x in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()
    ]
    assert [Path(f["path"]).name for f in failures] == ["broken.png"]
    assert not (tmp_path / "out" / "a" / "broken.json").exists()


def test_resume_after_kill(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 8, size=(120, 160))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "samkit.cli",
        "amg",
        str(tmp_path / "in"),
        "--out",
        str(out),
        *FAST,
        "--points-per-side",
        "24",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.relative_to(out) for p in out.rglob("*.json")}
    assert 2 <= len(first) < len(paths), "the kill should land mid-run"
    mtimes = {p: (out / p).stat().st_mtime_ns for p in first}

    r = subprocess.run(
        [*cmd[:-2], "--points-per-side", "24"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert f"{len(paths) - len(first)} done, {len(first)} skipped" in r.stdout
    final = {p.relative_to(out) for p in out.rglob("*.json")}
    assert len(final) == len(paths)
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # not redone
    for p in final:
        json.loads((out / p).read_text())  # every file complete
    assert not list(out.rglob("*.tmp")), "stale temporary files are cleaned up"


def test_collect_inputs(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# images\n{paths[0]}\n\nin/a/img1.png\n")
    got = collect_inputs([listing])
    assert [i.key for i in got] == ["img0", "img1"]
    assert [i.key for i in collect_inputs([tmp_path / "in"])] == ["a/img1", "b/img0", "b/img2"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_inputs([tmp_path / "nope"])
    (tmp_path / "other").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "other" / "img0.png")
    with pytest.raises(ValueError, match="same output"):
        collect_inputs([paths[0], tmp_path / "other" / "img0.png"])

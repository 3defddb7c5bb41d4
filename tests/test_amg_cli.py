"""`samkit amg` end to end: formats, resume after a kill, a corrupt image among good ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_overlays_show_every_mask(tmp_path: Path, make_images: Any) -> None:
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
def test_formats(tmp_path: Path, fmt: str, make_images: Any) -> None:
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


def test_corrupt_image_is_reported_and_skipped(tmp_path: Path, make_images: Any) -> None:
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


def test_resume_after_kill(
    tmp_path: Path, make_images: Any, named_pipes: Any, wait_until: Any
) -> None:
    # The kill lands at a known point. The last two inputs in the run's (sorted) order are
    # named pipes, whose reader waits until a writer comes: the run writes every image's
    # output, then waits on the first pipe and is killed there. It can neither finish before
    # the kill nor write anything after it. For the resume, images replace the pipes.
    paths = make_images(tmp_path / "in", 6)
    pipes = named_pipes(tmp_path / "in" / "c", ["img6.png", "img7.png"])
    out = tmp_path / "out"
    done_first = {p.relative_to(tmp_path / "in").with_suffix(".json") for p in paths}
    cmd = [sys.executable, "-m", "samkit.cli", "amg", str(tmp_path / "in"), "--out", str(out)]
    cmd += FAST
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:  # outputs are renamed into place: once all exist, the run waits on the first pipe
        wait_until(
            lambda: all((out / p).exists() for p in done_first), proc, tmp_path / "stderr.txt"
        )
    finally:
        proc.kill()
        proc.wait()
    assert {p.relative_to(out) for p in out.rglob("img*.json")} == done_first
    mtimes = {p: (out / p).stat().st_mtime_ns for p in done_first}
    for late, pipe in zip(make_images(tmp_path / "late", 8)[6:], pipes, strict=True):
        os.replace(late, pipe)
    (out / "c").mkdir()
    (out / "c" / ".img6.json.k1ll3d.tmp").write_text('{"image": {"im')  # a write cut short

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 done, 6 skipped" in r.stdout
    final = {p.relative_to(out) for p in out.rglob("img*.json")}
    assert final == done_first | {Path("c/img6.json"), Path("c/img7.json")}
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # not redone
    for p in final:
        json.loads((out / p).read_text())  # every file complete
    assert not list(out.rglob("*.tmp")), "stale temporary files are cleaned up"


def test_collect_inputs(tmp_path: Path, make_images: Any) -> None:
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


def test_rerun_with_other_settings_is_refused_until_overwrite(
    tmp_path: Path, make_images: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from samkit.cli import main
    from samkit.loading import bundled_path, file_sha256

    make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    base = ["amg", str(tmp_path / "in"), "--out", str(out)]
    assert main([*base, *FAST]) == 0
    settings = json.loads((out / ".samkit_settings.json").read_text())
    assert (settings["model"], settings["weights"], settings["format"]) == (
        "samkit_tiny",
        "seeded:0",
        "sa1b",
    )
    assert (settings["points_per_side"], settings["pred_iou_thresh"]) == (6, 0.0)
    outputs = {p: p.stat().st_mtime_ns for p in out.rglob("img*.json")}
    assert len(outputs) == 2
    capsys.readouterr()

    # How fast masks come (points per batch) is not a setting: the rerun resumes.
    assert main([*base, *FAST, "--points-per-batch", "5"]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out

    other = [*FAST, "--model", "samkit_default", "--pred-iou-thresh", "0.5"]
    assert main([*base, *other]) == 1
    bundled = file_sha256(bundled_path("samkit_default"))
    assert capsys.readouterr().err == (
        f"samkit: error: {out} holds outputs made with other settings (model: was samkit_tiny "
        f"(seeded:0), now samkit_default (sha256 {bundled[:12]}); pred_iou_thresh: was 0.0, "
        "now 0.5); resuming would keep them as they are. Pass --overwrite to delete them and "
        "start again, or choose another --out\n"
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("img*.json")} == outputs  # untouched
    assert json.loads((out / ".samkit_settings.json").read_text()) == settings

    # --overwrite deletes the outputs made the old way (here in another format) and starts again.
    assert main([*base, *other, "--format", "png", "--overwrite"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert not list(out.rglob("img*.json"))
    assert {p.parent.relative_to(out) for p in out.rglob("labels.png")} == {
        Path("a/img1"),
        Path("b/img0"),
    }
    settings = json.loads((out / ".samkit_settings.json").read_text())
    assert (settings["model"], settings["format"], settings["pred_iou_thresh"]) == (
        "samkit_default",
        "png",
        0.5,
    )
    assert main([*base, *other, "--format", "png"]) == 0  # the same settings resume
    assert "0 done, 2 skipped" in capsys.readouterr().out


def test_a_folder_without_outputs_takes_new_settings(tmp_path: Path, make_images: Any) -> None:
    # A run that recorded its settings and then failed (a model that would not download)
    # leaves nothing to keep: another run there is not refused.
    from samkit.runner import SETTINGS, amg_settings, prepare_output

    inputs = collect_inputs([make_images(tmp_path / "in", 1)[0]])
    old = amg_settings("vit_b", {}, "sa1b", overlays=False)
    prepare_output(tmp_path / "out", old, inputs, "sa1b")
    (tmp_path / "out" / "failures.jsonl").write_text("{}\n")
    new = amg_settings("samkit_tiny", {}, "sa1b", overlays=False)
    prepare_output(tmp_path / "out", new, inputs, "sa1b")
    assert json.loads((tmp_path / "out" / SETTINGS).read_text())["model"] == "samkit_tiny"


def test_max_pixels_fails_a_large_image_and_names_the_flag(
    tmp_path: Path, make_images: Any
) -> None:
    """--max-pixels reaches the image loader: a 60x80 image over a 1000-pixel limit fails,
    is recorded in failures.jsonl with the flag that raises the limit, and the run goes on."""
    (image_path,) = make_images(tmp_path / "in", 1)
    r = amg(str(image_path), "--out", str(tmp_path / "out"), "--max-pixels", "1000", *FAST)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    failures = (tmp_path / "out" / "failures.jsonl").read_text()
    assert "--max-pixels 4800" in failures
    assert not (tmp_path / "out" / "img0.json").exists()

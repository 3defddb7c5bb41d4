"""`samkit engine` on a real local Ray (2 CPUs): equal to `samkit amg`, a corrupt image among
good ones, kill and resume, fsspec URIs, de-identification inside the pipeline."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samkit.data import SA1BFolder
from samkit.scale.pipeline import EngineConfig, RayOptions, run_engine
from samkit.scale.store import OutputStore, collect_items

FAST = ["--points-per-side", "6", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
AMG_OPTIONS = {"points_per_side": 6, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def samkit(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "samkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def local_ray() -> object:
    """One local Ray for the in-process tests of this module, shut down after them."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_equal_to_amg_and_corrupt_image_recorded(tmp_path: Path, make_images: Any) -> None:
    make_images(tmp_path / "in", 4)
    (tmp_path / "in" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    common = [str(tmp_path / "in"), "--model", "samkit_tiny", *FAST, "--no-progress"]
    r = samkit("engine", *common, "--out", str(tmp_path / "eng"), "--concurrency", "2")
    assert r.returncode == 1, r.stderr  # 1: an image failed; the others are done
    assert "4 done, 0 skipped" in r.stdout and "1 failed" in r.stdout
    assert "broken.png" in r.stderr
    a = samkit("amg", *common, "--out", str(tmp_path / "amg"))
    assert "4 done" in a.stdout, a.stderr
    eng, amg = tmp_path / "eng", tmp_path / "amg"
    outputs = sorted(p.relative_to(amg) for p in amg.rglob("img*.json"))
    assert len(outputs) == 4
    assert sorted(p.relative_to(eng) for p in eng.rglob("img*.json")) == outputs
    for rel in outputs:  # byte for byte: same ids, masks, scores, number formatting
        assert (eng / rel).read_bytes() == (amg / rel).read_bytes(), rel
    failures = [json.loads(x) for x in (eng / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["path"]).name for f in failures] == ["broken.png"]
    assert "ImageError" in failures[0]["error"]
    manifest = json.loads((eng / "manifest.json").read_text())
    assert (manifest["inputs"], manifest["outputs"], manifest["failures"]) == (5, 4, 1)
    assert manifest["missing"] == 0


def test_kill_midway_and_resume(
    tmp_path: Path, make_images: Any, named_pipes: Any, wait_until: Any
) -> None:
    # The kill lands at a known point, as in test_amg_cli.py: the last two inputs are named
    # pipes, whose reader (the one actor, which takes the images in order) waits until a
    # writer comes. Once every image's output exists the run can only wait, so the kill finds
    # it there; a Ray worker that outlives the kill waits on a pipe that no one will open.
    paths = make_images(tmp_path / "in", 6, size=(96, 128))
    pipes = named_pipes(tmp_path / "in" / "c", ["img6.png", "img7.png"])
    out = tmp_path / "out"
    done_first = {p.relative_to(tmp_path / "in").with_suffix(".json") for p in paths}
    cmd = [sys.executable, "-m", "samkit.cli", "engine", str(tmp_path / "in"), "--out", str(out)]
    cmd += ["--model", "samkit_tiny", *FAST, "--no-progress", "--concurrency", "1"]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=ENV, start_new_session=True
        )
    try:  # outputs are renamed into place: once all exist, the run waits on the first pipe
        wait_until(
            lambda: all((out / p).exists() for p in done_first), proc, tmp_path / "stderr.txt"
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, all at once
        proc.wait()
    assert {p.relative_to(out) for p in out.rglob("img*.json")} == done_first
    mtimes = {p: (out / p).stat().st_mtime_ns for p in done_first}
    late = make_images(tmp_path / "late", 8, size=(96, 128))[6:]
    for image, pipe in zip(late, pipes, strict=True):
        os.replace(image, pipe)  # a reader still waiting on the old pipe keeps waiting
    (out / "c").mkdir()
    (out / "c" / ".img6.json.k1ll3d.tmp").write_text('{"image": {"im')  # a write cut short

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "2 done, 6 skipped" in r.stdout
    final = {p.relative_to(out) for p in out.rglob("img*.json")}
    assert final == done_first | {Path("c/img6.json"), Path("c/img7.json")}
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # none redone
    for p in final:
        json.loads((out / p).read_text())  # every file complete
    assert not list(out.rglob("*.tmp")), "stale temporary files are cleaned up"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["skipped"] == 6 and manifest["outputs"] == len(final)


def test_uris_deid_and_images_beside_json(
    tmp_path: Path, local_ray: object, make_images: Any
) -> None:
    from skimage import data

    (tmp_path / "in").mkdir()
    Image.fromarray(data.astronaut()[::4, ::4]).save(tmp_path / "in" / "astronaut.jpg")
    make_images(tmp_path / "in", 1)
    listing = tmp_path / "in" / "list.txt"
    listing.write_text("astronaut.jpg\nb/img0.png\n")
    items = collect_items([f"file://{listing}"])
    assert [i.key for i in items] == ["astronaut", "img0"]
    assert all(i.uri.startswith("file://") for i in items)
    config = EngineConfig(
        model="samkit_tiny",
        out=f"file://{tmp_path / 'out'}",
        amg_options=AMG_OPTIONS,
        deid="face",
    )
    summary = run_engine(items, config, RayOptions(concurrency=1), progress=False)
    assert (summary.done, len(summary.failed)) == (2, 0)
    info = json.loads((tmp_path / "out" / "astronaut.json").read_text())["image"]
    assert info["file_name"] == "astronaut.jpg"
    assert len(info["deid"]) == 1 and info["deid"][0]["kind"] == "face"
    x, y, w, h = info["deid"][0]["bbox"]
    assert 35 <= x + w / 2 <= 65 and 20 <= y + h / 2 <= 40  # the face, at 1/4 scale
    blurred = np.asarray(Image.open(tmp_path / "out" / "astronaut.jpg"))
    original = data.astronaut()[::4, ::4]
    assert (
        np.abs(blurred[y : y + h, x : x + w].astype(int) - original[y : y + h, x : x + w]).mean()
        > 10
    )
    assert json.loads((tmp_path / "out" / "img0.json").read_text())["image"]["deid"] == []
    # A second run over the same items does nothing and keeps the manifest's counts.
    again = run_engine(items, config, RayOptions(), progress=False)
    assert (again.done, again.skipped) == (0, 2)
    # The output is training input: images beside their JSON, read by SA1BFolder.
    folder = SA1BFolder(tmp_path / "out")
    assert len(folder) == 2 and folder[0].image.shape == (128, 128, 3)


def test_write_images_copies_the_original(
    tmp_path: Path, local_ray: object, make_images: Any
) -> None:
    paths = make_images(tmp_path / "in", 2)
    config = EngineConfig(
        model="samkit_tiny", out=str(tmp_path / "out"), amg_options=AMG_OPTIONS, write_images=True
    )
    summary = run_engine(collect_items([str(tmp_path / "in")]), config, RayOptions())
    assert summary.done == 2
    for path in paths:
        rel = path.relative_to(tmp_path / "in")
        assert (tmp_path / "out" / rel).read_bytes() == path.read_bytes()
    samples = SA1BFolder(tmp_path / "out")
    assert len(samples) == 2 and samples[1].masks.shape[1:] == (60, 80)


def test_rerun_with_other_settings_is_refused_until_overwrite(
    tmp_path: Path, local_ray: object, make_images: Any
) -> None:
    from samkit.runner import SettingsMismatch

    make_images(tmp_path / "in", 2)
    items = collect_items([str(tmp_path / "in")])
    config = EngineConfig(model="samkit_tiny", out=str(tmp_path / "out"), amg_options=AMG_OPTIONS)
    assert run_engine(items, config, RayOptions(), progress=False).done == 2
    outputs = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("img*.json")}
    assert len(outputs) == 2
    # The command with the same options given as flags resumes; with another threshold it
    # is refused before Ray starts.
    common = [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", "samkit_tiny"]
    common += [*FAST, "--min-mask-region-area", "0", "--no-progress"]
    r = samkit("engine", *common, "--points-per-batch", "7")
    assert r.returncode == 0 and "0 done, 2 skipped" in r.stdout, r.stderr
    r = samkit("engine", *common, "--pred-iou-thresh", "0.5")
    assert r.returncode == 1
    assert r.stderr == (  # and nothing else: refused before Ray started
        f"samkit: error: {tmp_path / 'out'} holds outputs made with other settings "
        "(pred_iou_thresh: was 0.0, now 0.5); resuming would keep them as they are. Pass "
        "--overwrite to delete them and start again, or choose another --out\n"
    )
    deid = dataclasses.replace(config, deid="face")
    with pytest.raises(SettingsMismatch, match="deid: was , now face"):
        run_engine(items, deid, RayOptions(), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("img*.json")} == outputs

    again = run_engine(items, deid, RayOptions(), progress=False, overwrite=True)
    assert (again.done, again.skipped) == (2, 0)  # every image made again, de-identified
    for path in outputs:
        assert "deid" in json.loads(path.read_text())["image"]
    settings = json.loads((tmp_path / "out" / ".samkit_settings.json").read_text())
    assert (settings["command"], settings["deid"], settings["weights"]) == (
        "engine",
        "face",
        "seeded:0",
    )


def test_output_store_writes_whole_files(tmp_path: Path) -> None:
    for root in (str(tmp_path / "local"), f"file://{tmp_path / 'uri'}"):
        store = OutputStore(root)
        store.write_bytes("a/b.json", b"{}")
        store.append_line("log.jsonl", "1")
        store.append_line("log.jsonl", "2")
        assert store.exists("a/b.json") and store.existing(".json") == {"a/b"}
        assert Path(store.path("log.jsonl")).read_text() == "1\n2\n"
        store.remove("log.jsonl")
        assert not store.exists("log.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_items([f"file://{tmp_path / 'nope'}"])


def test_refused_before_ray_starts(tmp_path: Path, make_images: Any) -> None:
    make_images(tmp_path / "in", 1)
    r = samkit("engine", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", "nope")
    assert r.returncode == 1 and "neither a model name" in r.stderr
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "manifest.png")
    items = collect_items([str(tmp_path / "manifest.png")])
    config = EngineConfig(model="samkit_tiny", out=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="engine's own manifest"):
        run_engine(items, config, RayOptions(), progress=False)

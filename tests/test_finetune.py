"""`samkit finetune` and the dataset training source, on SA-1B folders written from scenes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_datasets import records

from samkit import load
from samkit.cli import main
from samkit.data import SA1BFolder, make_scene
from samkit.data.folders import Sample
from samkit.io.sa1b import write_sa1b
from samkit.train.sources import MIN_MASK_AREA, DatasetSource, fit_sample


def write_folder(root: Path, seed: int, n: int, size: int, dilate: int = 0) -> Path:
    """An SA-1B folder of `n` synthetic scenes, masks dilated by `dilate` px if asked."""
    root.mkdir(parents=True, exist_ok=True)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    for i in range(n):
        scene = make_scene(seed, i, size)
        masks = np.stack([cv2.dilate(m.view(np.uint8), disc).astype(bool) for m in scene.masks])
        Image.fromarray(scene.image).save(root / f"sa_{i}.png")
        write_sa1b(
            root / f"sa_{i}.json",
            records(masks),
            image={"image_id": i, "width": size, "height": size, "file_name": f"sa_{i}.png"},
        )
    return root


def test_fit_sample_resizes_pads_and_drops_tiny_masks() -> None:
    image = np.full((64, 128, 3), 200, dtype=np.uint8)
    big = np.zeros((64, 128), dtype=bool)
    big[10:50, 20:100] = True
    tiny = np.zeros((64, 128), dtype=bool)
    tiny[0:2, 0:2] = True
    fitted = fit_sample(Sample(image, np.stack([big, tiny]), [1, 2], Path("x.png"), []), 64)
    assert fitted.image.shape == (64, 64, 3) and fitted.masks.shape == (1, 64, 64)
    assert (fitted.image[:32] == 200).all() and (fitted.image[32:] == 0).all()  # padded below
    assert fitted.masks[0, 5:25, 10:50].all() and fitted.masks[0].sum() == 20 * 40
    assert fitted.masks.sum() >= MIN_MASK_AREA


def test_dataset_source_visits_every_sample_each_epoch_in_seeded_order(tmp_path: Path) -> None:
    data = SA1BFolder(write_folder(tmp_path, seed=4, n=3, size=64))
    source = DatasetSource(data, 64, seed=1)
    firsts = [source(i).image.tobytes() for i in range(6)]
    assert len(set(firsts[:3])) == 3 and set(firsts[:3]) == set(firsts[3:])
    assert [s.image.tobytes() for s in map(DatasetSource(data, 64, seed=1), range(6))] == firsts


def test_finetune_command_trains_the_decoder_and_writes_a_loadable_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    folder = write_folder(tmp_path / "data", seed=4, n=2, size=256)
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_tiny", "--sa1b", str(folder), "--out", str(run)]
    assert main([*args, "--steps", "2", "--threads", "1", "--freeze-encoder"]) == 0
    tuned, start = load(run / "model.safetensors").state_dict(), load("samkit_tiny").state_dict()
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert changed and all(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in changed)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]


def test_finetune_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    base = ["finetune", "--model", "samkit_tiny", "--out", str(tmp_path / "run")]
    assert main([*base, "--sa1b", str(tmp_path / "empty")]) == 1
    assert "at least 2 images" in capsys.readouterr().err
    assert main([*base, "--sa1b", str(tmp_path / "empty"), "--steps", "0"]) == 1
    assert "--steps must be positive" in capsys.readouterr().err
    assert main([*base, "--coco", str(tmp_path / "x.json")]) == 1
    assert "--coco needs --images" in capsys.readouterr().err


def test_finetuning_teaches_the_bundled_model_a_new_annotation_style(tmp_path: Path) -> None:
    # A user whose annotators draw masks with a margin (outlines dilated by 3 px, as coarse
    # polygon annotations often are): decoder-only fine-tuning on such masks must raise the
    # held-out one-click mIoU that `samkit finetune` reports.
    torch.set_num_threads(1)
    folder = write_folder(tmp_path / "data", seed=21, n=20, size=128, dilate=3)
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_default", "--sa1b", str(folder), "--out", str(run)]
    args += ["--steps", "80", "--lr", "5e-4", "--freeze-encoder", "--holdout", "0.25"]
    assert main([*args, "--threads", "1"]) == 0
    result = json.loads((run / "finetune_report.json").read_text())
    assert result["held_out_images"] == 5
    assert result["after_miou@1"] > result["before_miou@1"] + 0.03, result
    assert result["after_miou@3"] > result["before_miou@3"] + 0.03, result

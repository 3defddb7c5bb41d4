"""`samkit finetune` and the dataset training source, on SA-1B folders written from scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samkit import SamPredictor, load
from samkit.cli import main
from samkit.data import SA1BFolder
from samkit.data.folders import Sample
from samkit.modeling import Sam
from samkit.train import TrainConfig
from samkit.train.sources import MIN_MASK_AREA, DatasetSource, fit_sample
from samkit.train.step import train_step
from samkit.train.trainer import build_optimizer


def test_fit_sample_resizes_pads_and_drops_tiny_masks() -> None:
    image = np.full((64, 128, 3), 200, dtype=np.uint8)
    big = np.zeros((64, 128), dtype=bool)
    big[10:50, 20:100] = True
    tiny = np.zeros((64, 128), dtype=bool)
    tiny[0:2, 0:2] = True
    fitted = fit_sample(Sample(image, np.stack([big, tiny]), [1, 2], Path("x.png"), []), 64)
    # the image is resized only: the model pads it (after normalising, as for the predictor)
    assert fitted.image.shape == (32, 64, 3) and (fitted.image == 200).all()
    assert fitted.masks.shape == (1, 64, 64) and not fitted.masks[0, 32:].any()  # padded below
    assert fitted.masks[0, 5:25, 10:50].all() and fitted.masks[0].sum() == 20 * 40
    assert fitted.masks.sum() >= MIN_MASK_AREA


def test_a_training_sample_is_what_the_predictor_feeds_the_encoder(tiny_sam: Sam) -> None:
    # The README promises training fits images "as the predictor does": the encoder's input
    # during a training step must equal its input in SamPredictor.set_image, resize (PIL
    # bilinear, longest side rounded half up) and padding (zeros after normalising) included.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(150, 97, 3), dtype=np.uint8)
    image[30:120, 10:80] = (240, 30, 30)
    mask = np.zeros((150, 97), dtype=bool)
    mask[30:120, 10:80] = True
    fitted = fit_sample(Sample(image, mask[None], [1], Path("x.png"), []), tiny_sam.img_size)
    model = load("samkit_tiny")  # trained below: not the shared fixture
    seen: list[torch.Tensor] = []
    hook = model.image_encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        SamPredictor(model).set_image(image)
        config = TrainConfig(model="samkit_tiny", scene_size=model.img_size, masks_per_step=1,
                             min_rounds=1, max_rounds=1, freeze_image_encoder=True,
                             precision="fp32")  # fmt: skip
        train_step(model.train(), build_optimizer(model, config), [fitted], [0], config)
    finally:
        hook.remove()
    predictor_input, training_input = seen
    assert predictor_input.shape == training_input.shape == (1, 3, 256, 256)
    assert torch.equal(training_input, predictor_input)


def test_dataset_source_visits_every_sample_each_epoch_in_seeded_order(
    tmp_path: Path, write_sa1b_scenes: Any
) -> None:
    data = SA1BFolder(write_sa1b_scenes(tmp_path, seed=4, n=3, size=64))
    source = DatasetSource(data, 64, seed=1)
    firsts = [source(i).image.tobytes() for i in range(6)]
    assert len(set(firsts[:3])) == 3 and set(firsts[:3]) == set(firsts[3:])
    assert [s.image.tobytes() for s in map(DatasetSource(data, 64, seed=1), range(6))] == firsts


def test_finetune_command_trains_the_decoder_and_writes_a_loadable_model(
    tmp_path: Path, write_sa1b_scenes: Any
) -> None:
    torch.set_num_threads(1)
    folder = write_sa1b_scenes(tmp_path / "data", seed=4, n=2, size=256)
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_tiny", "--sa1b", str(folder), "--out", str(run)]
    args += ["--device", "cpu", "--precision", "fp32"]
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
    assert main([*base, "--sa1b", str(tmp_path / "empty"), "--device", "gpu"]) == 1
    assert "devices here: cpu" in capsys.readouterr().err  # before the dataset is read
    assert not (tmp_path / "run").exists()


def test_finetuning_teaches_the_bundled_model_a_new_annotation_style(
    tmp_path: Path, write_sa1b_scenes: Any
) -> None:
    # A user whose annotators draw masks with a margin (outlines dilated by 3 px, as coarse
    # polygon annotations often are): decoder-only fine-tuning on such masks must raise the
    # held-out one-click mIoU that `samkit finetune` reports.
    torch.set_num_threads(1)
    folder = write_sa1b_scenes(tmp_path / "data", seed=21, n=20, size=128, dilate=3)
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_default", "--sa1b", str(folder), "--out", str(run)]
    args += ["--steps", "80", "--lr", "5e-4", "--freeze-encoder", "--holdout", "0.25"]
    assert main([*args, "--threads", "1"]) == 0
    result = json.loads((run / "finetune_report.json").read_text())
    assert result["held_out_images"] == 5
    assert result["after_miou@1"] > result["before_miou@1"] + 0.03, result
    assert result["after_miou@3"] > result["before_miou@3"] + 0.03, result

"""The exact object masks of a grounder's training scenes (`samkit.train.exact_regions`), and
training with them (`GrounderConfig.exact_weight`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit import SamPredictor
from samkit.data import make_scene
from samkit.data.phrases import COLOUR_NAMES, words
from samkit.text.grounding import N_FEATURES, SHAPE_CLASSES, TextGrounder
from samkit.train.exact_regions import (
    exact_loss,
    exact_record,
    object_classes,
    pretrain_data,
    pretrain_loss,
)
from samkit.train.grounder import GrounderConfig, _attribute_loss, main, scene_record

pytest.importorskip("transformers")


def test_exact_record_describes_every_object_and_its_loss_learns() -> None:
    config = GrounderConfig(random_points=8)
    model = samkit.load("samkit_default")
    model.text_grounder = TextGrounder(384)
    scene = make_scene(config.scene_seed, 0, config.scene_size)
    record = scene_record(SamPredictor(model), config, 0, np.random.default_rng(0))
    exact = exact_record(scene, record, config.label_iou)
    kept = [i for i, m in enumerate(scene.masks) if m.any()]
    assert exact["numbers"].shape == (len(kept), N_FEATURES)
    assert exact["iou"].shape == (len(scene.masks), len(kept))
    assert all(float(exact["iou"][i, j]) == 1.0 for j, i in enumerate(kept))
    look = [words(scene.objects[i], scene.masks[0].size) for i in kept]
    assert exact["colour"].tolist() == [COLOUR_NAMES.index(w.colour) for w in look]
    assert exact["shape"].tolist() == [SHAPE_CLASSES.index(w.shape) for w in look]
    # each mask is described with the best score of the proposals covering it
    scores, iou = record["numbers"][:, -1], record["iou"].float()
    for j, i in enumerate(kept):
        covering = iou[i] >= config.label_iou
        if covering.any():
            assert float(exact["numbers"][j, -1]) == pytest.approx(float(scores[covering].max()))
    # the loss falls when the grounder trains on it alone
    torch.manual_seed(0)
    grounder = TextGrounder(384)
    vectors = torch.randn(4, 384)
    targets = torch.tensor(kept[:4])
    opt = torch.optim.Adam(grounder.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = exact_loss(
            grounder,
            exact,
            (1, True),
            grounder.text(vectors),
            targets,
            _attribute_loss,
            0.03,
            torch.device("cpu"),
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_training_with_exact_masks_writes_a_grounder(tmp_path: Path) -> None:
    config = tmp_path / "exact.json"
    settings = {"scenes": 2, "steps": 2, "scenes_per_step": 2, "random_points": 8}
    config.write_text(json.dumps({**settings, "exact_weight": 1.0}))
    assert main(["--out", str(tmp_path / "run"), "--config", str(config), "--threads", "1"]) == 0
    model = samkit.load(tmp_path / "run" / "model.safetensors")
    assert model.text_grounder is not None
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(settings))
    assert main(["--out", str(tmp_path / "plain"), "--config", str(plain), "--threads", "1"]) == 0
    other = samkit.load(tmp_path / "plain" / "model.safetensors").text_grounder
    assert other is not None
    changed = [
        name
        for (name, a), (_, b) in zip(
            model.text_grounder.state_dict().items(), other.state_dict().items(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert changed  # the exact masks' losses moved the weights


def test_pretraining_data_names_each_scenes_exact_masks_and_its_loss_learns() -> None:
    config = GrounderConfig(scenes=2, pretrain_scenes=3, scenes_per_step=2)
    logged: list[dict[str, int]] = []
    data = pretrain_data(config, 0.8, logged.append)
    assert logged[-1]["pretrain_scenes"] == len(data) == 3
    for record, index in zip(data, (2, 3, 4), strict=True):  # the scenes after phase 1's
        scene = make_scene(config.scene_seed, index, config.scene_size)
        kept = [i for i, m in enumerate(scene.masks) if m.any()]
        colour, shape = object_classes(scene)
        assert record["colour"].tolist() == colour[kept].tolist()
        assert record["shape"].tolist() == shape[kept].tolist()
        assert record["numbers"].shape == (len(kept), N_FEATURES)
        assert torch.all(record["numbers"][:, -1] == 0.8)  # the score they are described with
        assert record["shapes"].pictures.dtype == torch.float16
    torch.manual_seed(0)
    grounder = TextGrounder(384)
    opt = torch.optim.Adam(grounder.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        rng = np.random.default_rng(0)  # the same scenes and turns each step
        loss = pretrain_loss(grounder, data, config, _attribute_loss, torch.device("cpu"), rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_training_pretrains_first_resumes_and_checks_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"scenes": 2, "steps": 2, "scenes_per_step": 2, "random_points": 8}
    config = tmp_path / "pretrain.json"
    config.write_text(json.dumps({**settings, "pretrain_scenes": 2, "pretrain_steps": 3}))
    out = tmp_path / "run"
    assert main(["--out", str(out), "--config", str(config), "--threads", "1"]) == 0
    assert torch.load(out / "pretrain_checkpoint.pt", weights_only=True)["step"] == 3
    assert '"phase": "pretrain_checkpoint", "step": 3' in capsys.readouterr().err
    pretrained = samkit.load(out / "model.safetensors").text_grounder
    # run again: both phases are done, nothing is trained again
    assert main(["--out", str(out), "--config", str(config), "--threads", "1"]) == 0
    assert "pretrain_checkpoint" not in capsys.readouterr().err
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(settings))
    assert main(["--out", str(tmp_path / "plain"), "--config", str(plain), "--threads", "1"]) == 0
    other = samkit.load(tmp_path / "plain" / "model.safetensors").text_grounder
    assert pretrained is not None and other is not None
    assert not torch.equal(pretrained.attributes.weight, other.attributes.weight)
    for bad, why in (
        ({"pretrain_steps": 3}, "pretrain_steps needs pretrain_scenes"),
        ({"pretrain_scenes": -1}, "pretrain_scenes must be >= 0"),
    ):
        config.write_text(json.dumps({**settings, **bad}))
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "bad"), "--config", str(config)])
        assert why in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

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
from samkit.train.exact_regions import exact_loss, exact_record
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

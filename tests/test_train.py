"""Training: losses against hand-computed values, prompt simulation, steps and exact resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samkit.build import sam_model_registry, variant_registry
from samkit.checkpoints import CheckpointError
from samkit.data import make_scene
from samkit.masks import batched_mask_to_box
from samkit.train import (
    TrainConfig,
    dice_loss,
    focal_loss,
    iou_loss,
    mask_iou,
    mask_loss,
    noisy_boxes,
    protocol_points,
    sample_error_points,
    sample_points_in,
    train,
)
from samkit.train.checkpoint import latest_checkpoint, load_checkpoint
from samkit.train.step import (
    _with_protocol_clicks,
    resize_matrix,
    simulate_rounds,
    step_generator,
    train_step,
)
from samkit.train.trainer import build_optimizer, new_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Training runs on 1 thread (as the committed config); on a busy 2-core machine, 2 OpenMP
    # threads can be many times slower than 1.
    torch.set_num_threads(1)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- losses ------------------------------------------------------------------------------------
LOGITS = torch.tensor([[[0.0, 2.0]]])  # (1, 1, 2): one mask of two pixels
TARGETS = torch.tensor([[[1.0, 0.0]]])


def test_focal_loss_by_hand() -> None:
    # pixel 1: p = 0.5, target 1 -> 0.25 * (1 - 0.5)^2 * ln 2
    # pixel 2: p = sig(2), target 0 -> 0.75 * p^2 * -ln(1 - p)
    p = sig(2.0)
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * p**2 * -math.log(1 - p)) / 2
    assert focal_loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)


def test_dice_loss_by_hand() -> None:
    p = sig(2.0)
    expected = 1 - (2 * 0.5 + 1) / (0.5 + p + 1 + 1)
    assert dice_loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)
    assert mask_loss(LOGITS, TARGETS).item() == pytest.approx(
        20 * focal_loss(LOGITS, TARGETS).item() + expected, rel=1e-5
    )


def test_focal_loss_class_weight_by_hand() -> None:
    p = sig(2.0)
    balanced = (0.5 * 0.25 * math.log(2) + 0.5 * p**2 * -math.log(1 - p)) / 2
    assert focal_loss(LOGITS, TARGETS, alpha=0.5).item() == pytest.approx(balanced, rel=1e-5)
    assert focal_loss(LOGITS, TARGETS, alpha=-1).item() == pytest.approx(2 * balanced, rel=1e-5)
    dice = dice_loss(LOGITS, TARGETS).item()
    assert mask_loss(LOGITS, TARGETS, alpha=0.5).item() == pytest.approx(20 * balanced + dice)


def test_iou_loss_by_hand() -> None:
    logits = torch.tensor([[[1.0, -1.0], [1.0, 1.0]]])  # predicted: 3 pixels
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # 2 pixels, 1 shared -> IoU 1/4
    assert mask_iou(logits, target).item() == pytest.approx(0.25)
    assert iou_loss(torch.tensor([0.5]), logits, target).item() == pytest.approx(0.0625)
    empty = torch.zeros(1, 2, 2)
    assert mask_iou(-torch.ones(1, 2, 2), empty).item() == 1.0


def test_resize_matrix_matches_interpolate() -> None:
    x = torch.randn(2, 3, 16, 16)
    m = resize_matrix(16, 64)
    expected = F.interpolate(x, (64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(m @ x @ m.T, expected, atol=1e-5)


# -- prompt simulation -----------------------------------------------------------------------
def _masks() -> torch.Tensor:
    masks = torch.zeros(3, 40, 50, dtype=torch.bool)
    masks[0, 5:10, 20:30] = True
    masks[1, 0:40, 0:3] = True
    masks[2, 17, 33] = True
    return masks


def test_points_land_inside_masks() -> None:
    masks, gen = _masks(), torch.Generator().manual_seed(0)
    for _ in range(50):
        xy = sample_points_in(masks, gen).long()
        assert masks[torch.arange(3), xy[:, 1], xy[:, 0]].all()


def test_error_points_land_in_the_error_region_with_its_label() -> None:
    target, gen = _masks(), torch.Generator().manual_seed(1)
    pred = torch.zeros_like(target)
    pred[0, 5:10, 20:25] = True  # half of object 0: a false negative remains
    pred[1] = target[1]
    pred[1, 30:35, 10:20] = True  # object 1 spills over: false positive
    pred[2] = target[2]  # perfect
    for _ in range(50):
        xy, labels = sample_error_points(pred, target, gen)
        x, y = xy[:, 0].long(), xy[:, 1].long()
        assert 25 <= x[0] < 30 and 5 <= y[0] < 10 and labels[0] == 1
        assert 10 <= x[1] < 20 and 30 <= y[1] < 35 and labels[1] == 0
        assert (x[2], y[2], labels[2]) == (33, 17, 1)


def test_protocol_points_are_the_evaluation_clicks() -> None:
    from samkit.eval import next_click

    target = torch.zeros(2, 40, 60, dtype=torch.bool)
    target[0, 10:21, 20:31] = True  # an 11 x 11 square: its most interior pixel is (25, 15)
    target[1, 0:40, 0:30] = True  # the left half
    xy, labels = protocol_points(None, target)
    assert xy[0].tolist() == [25, 15] and labels.tolist() == [1, 1]
    assert 14 <= xy[1, 0] <= 15 and 14 <= xy[1, 1] <= 25  # 15 px from the edges
    pred = target.clone()
    pred[0, 10:21, 20:23] = False  # a missed 11 x 3 strip: a positive click on its middle column
    pred[1, 10:31, 40:51] = True  # a 21 x 11 spill: a negative click on its middle column
    xy, labels = protocol_points(pred, target)
    assert xy[0, 0] == 21 and 11 <= xy[0, 1] <= 19 and labels[0] == 1
    assert xy[1, 0] == 45 and 15 <= xy[1, 1] <= 25 and labels[1] == 0
    for i in range(2):
        expected = next_click(pred[i].numpy(), target[i].numpy())
        assert (*xy[i].tolist(), int(labels[i])) == expected
    xy, labels = protocol_points(target, target)  # perfect: the interior point again
    assert xy[0].tolist() == [25, 15] and labels.tolist() == [1, 1]


def test_protocol_click_prob_mixes_draws_and_at_zero_draws_nothing() -> None:
    target = _masks()
    drawn = sample_points_in(target, torch.Generator().manual_seed(0))
    ones = torch.ones(3, dtype=torch.int)
    config = TrainConfig()
    assert config.protocol_click_prob == 0
    gen = torch.Generator().manual_seed(4)
    before = gen.get_state()
    xy, _ = _with_protocol_clicks(drawn, ones, None, target, gen, config)
    assert xy is drawn and torch.equal(gen.get_state(), before)
    always = dataclasses.replace(config, protocol_click_prob=1.0)
    xy, labels = _with_protocol_clicks(drawn, ones, None, target, gen, always)
    assert torch.equal(xy, protocol_points(None, target)[0]) and labels.tolist() == [1, 1, 1]
    half = dataclasses.replace(config, protocol_click_prob=0.5)
    picked = torch.stack([_with_protocol_clicks(drawn, ones, None, target, gen, half)[0]
                          for _ in range(40)])  # fmt: skip
    differs = (drawn != xy).any(dim=1)  # (3,) rows whose two points differ
    protocol = (picked == xy).all(dim=2) & differs  # (40, 3)
    assert 0.25 < int(protocol.sum()) / (40 * int(differs.sum())) < 0.75  # about half
    with pytest.raises(ValueError, match="protocol_click_prob"):
        dataclasses.replace(config, protocol_click_prob=1.5)
    with pytest.raises(ValueError, match="focal_alpha"):
        dataclasses.replace(config, focal_alpha=1.0)


def test_boxes_and_their_noise() -> None:
    masks = torch.zeros(2, 400, 400, dtype=torch.bool)
    masks[0, 50:350, 20:380] = True  # big: noise std 30-36 px, clipped at 20
    masks[1, 100:150, 200:300] = True  # small: std 5 px (y) and 10 px (x)
    tight = batched_mask_to_box(masks)
    assert tight.tolist() == [[20, 50, 379, 349], [200, 100, 299, 149]]
    gen = torch.Generator().manual_seed(2)
    masks = masks.repeat(200, 1, 1)  # 200 draws for each box at once
    offsets = (noisy_boxes(masks, gen) - tight.repeat(200, 1)).reshape(200, 2, 4)
    assert offsets.abs().max() <= 20
    assert offsets[:, 0].abs().max() == pytest.approx(20)  # the clip is reached
    std = offsets[:, 1].std(dim=0)
    assert std[0] == pytest.approx(10, rel=0.2) and std[1] == pytest.approx(5, rel=0.2)


def test_training_boxes_are_samkit_masks_boxes() -> None:
    # One implementation of a mask's box: training's own copy (mask_boxes) is gone, and the
    # noisy boxes sit around samkit.masks' boxes, empty masks (box 0, 0, 0, 0) included.
    import samkit.train
    import samkit.train.prompts

    assert not hasattr(samkit.train.prompts, "mask_boxes")
    assert "mask_boxes" not in samkit.train.__all__
    masks = torch.zeros(3, 30, 40, dtype=torch.bool)
    masks[0, 3:9, 5:25] = True
    masks[1, 29, 39] = True  # one pixel in the last row and column
    tight = batched_mask_to_box(masks).float()
    assert tight.tolist() == [[5, 3, 24, 8], [39, 29, 39, 29], [0, 0, 0, 0]]
    draws = noisy_boxes(masks.repeat(400, 1, 1), torch.Generator().manual_seed(3))
    mean = draws.reshape(400, 3, 4).mean(dim=0)  # (3, 4)
    assert torch.allclose(mean[0], tight[0], atol=0.3)  # std 2 px (x) and 0.6 px (y)
    assert (draws.reshape(400, 3, 4)[:, 1:] - tight[1:]).abs().max() < 0.5  # 1 px: std 0.1


# -- training ----------------------------------------------------------------------------------
def tiny_config(**changes: object) -> TrainConfig:
    config = TrainConfig(precision="fp32")  # the same steps on every CPU
    small = dict(
        model="samkit_tiny", masks_per_step=3, min_rounds=2, max_rounds=2, lr=2e-3,
        warmup_steps=1, total_steps=100, lr_milestones=(50,), val_scenes=1, scene_size=256,
    )  # fmt: skip
    return dataclasses.replace(config, **{**small, **changes})  # type: ignore[arg-type]


def test_init_only_takes_the_named_tensors_and_keeps_the_rest_fresh(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from samkit.build import seeded_init_

    source = seeded_init_(variant_registry["samkit_narrow"](), 5).state_dict()
    prefixes = ("image_encoder.blocks.", "image_encoder.pos_embed")
    config = TrainConfig(model="samkit_default", init_from="x.safetensors")
    fresh = new_model(config).state_dict()
    started = new_model(dataclasses.replace(config, init_only=prefixes), source).state_dict()
    for k, v in started.items():
        assert torch.equal(v, source[k] if k.startswith(prefixes) else fresh[k]), k
    assert not torch.equal(source["image_encoder.pos_embed"], fresh["image_encoder.pos_embed"])
    with pytest.raises(CheckpointError, match=r"image_encoder\.neck\.0\.weight"):  # 96 vs 256 wide
        new_model(dataclasses.replace(config, init_only=("image_encoder.",)), source)
    with pytest.raises(CheckpointError, match="name no tensor"):
        new_model(dataclasses.replace(config, init_only=("encoder.",)), source)
    with pytest.raises(ValueError, match="init_from"):
        dataclasses.replace(config, init_from="", init_only=prefixes)
    save_file(started, str(tmp_path / "wide.safetensors"))  # the builder loads its checkpoint
    rebuilt = sam_model_registry["samkit_default"](checkpoint=tmp_path / "wide.safetensors")
    assert all(torch.equal(v, started[k]) for k, v in rebuilt.state_dict().items())


def test_learning_rate_schedule() -> None:
    config = tiny_config(warmup_steps=10, lr_milestones=(50, 80), lr_gamma=0.1)
    assert config.lr_factor(0) == pytest.approx(0.1)
    assert config.lr_factor(9) == pytest.approx(1.0)
    assert config.lr_factor(49) == 1.0
    assert config.lr_factor(50) == pytest.approx(0.1)
    assert config.lr_factor(80) == pytest.approx(0.01)


def test_training_steps_lower_the_loss_on_a_fixed_scene() -> None:
    config = tiny_config()
    model = new_model(config)
    optimizer = build_optimizer(model, config)
    scene = make_scene(0, 0, 256)

    def held_out_loss() -> float:
        image = torch.from_numpy(scene.image).permute(2, 0, 1).float()
        with torch.no_grad():
            emb = model.image_encoder(model.preprocess(image)[None])
        targets = torch.from_numpy(scene.masks[:3])
        return simulate_rounds(model, emb, targets, step_generator(9, 9), config, False).loss

    before = held_out_loss()
    for step in range(6):
        stats = train_step(model, optimizer, [scene], [step], config)
        assert math.isfinite(stats.loss) and stats.masks == 3
    assert held_out_loss() < 0.8 * before


def test_resume_is_exact(tmp_path: Path) -> None:
    config = tiny_config()
    straight = train(config, tmp_path / "a", max_steps=4)
    train(config, tmp_path / "b", max_steps=2)
    resumed = train(config, tmp_path / "b", resume=True, max_steps=2)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "train"] == [2, 4]
    with pytest.raises(FileExistsError):
        train(config, tmp_path / "b", max_steps=1)
    with pytest.raises(ValueError, match="lr"):
        train(dataclasses.replace(config, lr=1.0), tmp_path / "b", resume=True, max_steps=1)


def test_resume_reads_a_checkpoint_from_before_a_config_field_existed(tmp_path: Path) -> None:
    config = tiny_config()
    train(config, tmp_path / "run", max_steps=1)
    (found,) = (tmp_path / "run" / "checkpoints").glob("step_*")
    state = torch.load(found / "state.pt", weights_only=True)
    saved = json.loads(state["config"])
    for added in ("focal_alpha", "protocol_click_prob"):  # as a checkpoint of an older samkit
        del saved[added]
    state["config"] = json.dumps(saved)
    torch.save(state, found / "state.pt")
    train(config, tmp_path / "run", resume=True, max_steps=1)  # the defaults: the same run
    with pytest.raises(ValueError, match="focal_alpha"):
        train(dataclasses.replace(config, focal_alpha=0.5), tmp_path / "run", resume=True)


def test_resume_may_move_a_decay_that_has_not_happened(tmp_path: Path) -> None:
    config = tiny_config(lr_milestones=(50,), total_steps=60)
    train(config, tmp_path / "run", max_steps=3)
    sooner = dataclasses.replace(config, lr_milestones=(4,), total_steps=6)
    resumed = train(sooner, tmp_path / "run", resume=True, max_steps=2).state_dict()
    straight = train(sooner, tmp_path / "straight", max_steps=5).state_dict()  # new schedule
    unchanged = train(config, tmp_path / "old", max_steps=5).state_dict()  # no decay at 4
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not all(torch.equal(unchanged[k], resumed[k]) for k in unchanged)
    with pytest.raises(ValueError, match="lr_milestones"):  # step 2 already ran at full rate
        train(dataclasses.replace(config, lr_milestones=(2,)), tmp_path / "run", resume=True)


def test_a_later_stage_starts_from_the_weights_it_names(tmp_path: Path) -> None:
    config = tiny_config(total_steps=2)
    first = train(config, tmp_path / "stage1")
    weights = tmp_path / "stage1" / "model.safetensors"
    assert weights.exists()
    second = dataclasses.replace(config, init_from=str(weights), lr=0.0)
    staged = train(second, tmp_path / "stage2", max_steps=1).state_dict()  # lr 0: no change
    fresh = train(dataclasses.replace(config, lr=0.0), tmp_path / "fresh", max_steps=1)
    a = first.state_dict()
    assert all(torch.equal(a[k], staged[k]) for k in a)
    assert not all(torch.equal(fresh.state_dict()[k], staged[k]) for k in a)
    with pytest.raises(CheckpointError, match=r"nowhere\.safetensors"):
        train(dataclasses.replace(config, init_from="nowhere.safetensors"), tmp_path / "bad")


# -- devices and precision -------------------------------------------------------------------
def test_the_step_trains_in_the_configs_precision() -> None:
    scene = make_scene(0, 0, 256)

    def one_step(precision: str) -> dict[str, torch.Tensor]:
        config = tiny_config(precision=precision)
        model = new_model(config)
        train_step(model, build_optimizer(model, config), [scene], [0], config)
        return model.state_dict()

    fp32, again, bf16 = one_step("fp32"), one_step("fp32"), one_step("bf16")
    assert all(torch.equal(fp32[k], again[k]) for k in fp32)
    assert not all(torch.equal(fp32[k], bf16[k]) for k in fp32)  # autocast did run in bf16


def test_a_bad_device_or_precision_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="devices here: cpu"):
        train(tiny_config(), tmp_path / "run", device="gpu")
    with pytest.raises(ValueError, match="precision"):
        train(dataclasses.replace(tiny_config(), precision="fp16"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_loads_onto_the_device_of_the_model(tmp_path: Path) -> None:
    # A checkpoint holds no device: weights and optimizer state come back on the model's device
    # (here the CPU; a GPU run resumes on a CPU and back the same way).
    config = tiny_config()
    trained = train(config, tmp_path / "run", max_steps=1, device="cpu")
    found = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert found is not None
    model = new_model(config).to(torch.device("cpu"))
    optimizer = build_optimizer(model, config)
    state = load_checkpoint(found, model)
    optimizer.load_state_dict(state.optimizer)
    assert state.step == 1 and state.torch_rng.device.type == "cpu"
    saved = trained.state_dict()
    assert all(torch.equal(v, saved[k]) and v.device == model.device
               for k, v in model.state_dict().items())  # fmt: skip
    moments = [v for p in optimizer.state for k, v in optimizer.state[p].items() if k != "step"]
    assert moments and all(v.device == model.device for v in moments)
    resumed = train(config, tmp_path / "run", resume=True, max_steps=1, device=torch.device("cpu"))
    assert resumed.device == torch.device("cpu")

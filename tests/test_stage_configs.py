"""The committed training configs of samkit_default: each stage continues the one before on
fresh scenes under the same validation, and the first matches its model."""

from __future__ import annotations

from pathlib import Path

import torch

from samkit.build import sam_model_registry
from samkit.train import TrainConfig
from samkit.train.trainer import new_model

CONFIG = Path(__file__).parents[1] / "configs" / "default_model.json"


def stage_config(stage: int) -> TrainConfig:
    """The committed config of samkit_default's training STAGE (1: configs/default_model.json)."""
    return TrainConfig.load(
        CONFIG.with_name(f"default_model_stage{stage}.json") if stage > 1 else CONFIG
    )


def earlier_scene_seeds(stage: int) -> list[int]:
    """The training scene streams of the stages before STAGE."""
    return [stage_config(earlier).train_scene_seed for earlier in range(1, stage)]


def test_committed_config_matches_its_model() -> None:
    config = TrainConfig.load(CONFIG)
    model = sam_model_registry[config.model]()
    assert model.img_size == config.scene_size
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 6e6
    assert set(config.notes) <= set(config.to_dict())
    seeds = {config.train_scene_seed, config.val_scene_seed, 3}  # 3: the final eval's
    previous = "runs/default"  # where stage 1 writes
    for stage in (2, 3):
        later = stage_config(stage)
        assert later.model == config.model and later.scene_size == config.scene_size
        assert later.init_from == f"{previous}/model.safetensors"
        assert later.train_scene_seed not in seeds  # fresh scenes each stage
        assert later.val_scene_seed == config.val_scene_seed
        assert set(later.notes) <= set(later.to_dict()) | {f"why stage {stage}"}
        seeds.add(later.train_scene_seed)
        previous = f"runs/default_stage{stage}"


def test_committed_last_stage_puts_the_full_decoder_on_the_narrow_stages_trunk() -> None:
    wide, stage3 = stage_config(4), stage_config(3)
    assert (wide.model, stage3.model) == ("samkit_default", "samkit_narrow")
    model = sam_model_registry[wide.model]()
    assert model.img_size == wide.scene_size == stage3.scene_size
    assert 5e6 < sum(p.numel() for p in model.parameters()) < 6.25e6  # bundle <= 25 MB
    assert wide.init_from == "runs/default_stage3/model.safetensors"
    assert wide.val_scene_seed == stage3.val_scene_seed
    assert wide.train_scene_seed not in {*earlier_scene_seeds(4), wide.val_scene_seed, 3}
    assert set(wide.notes) <= set(wide.to_dict()) | {"why"}
    with torch.device("meta"):  # the trunk's tensors fit; the run itself checks every shape
        trunk = sam_model_registry[stage3.model]().state_dict()
    started = new_model(wide, {k: torch.zeros_like(v, device="cpu") for k, v in trunk.items()})
    taken = [k for k in started.state_dict() if k.startswith(wide.init_only)]
    assert len(taken) > 50 and all(not started.state_dict()[k].any() for k in taken)


def continued_stage(stage: int) -> tuple[TrainConfig, TrainConfig]:
    """The configs of STAGE - 1 and STAGE, after checking that STAGE continues all of the
    previous stage's weights on fresh scenes under the same validation."""
    before, after = stage_config(stage - 1), stage_config(stage)
    assert after.model == before.model and after.scene_size == before.scene_size
    assert after.init_from == f"runs/default_stage{stage - 1}/model.safetensors"
    assert not after.init_only
    assert after.train_scene_seed not in {*earlier_scene_seeds(stage), after.val_scene_seed, 3}
    assert after.val_scene_seed == before.val_scene_seed
    assert set(after.notes) <= set(after.to_dict()) | {"why"}
    return before, after


def test_committed_fifth_stage_continues_the_fourth() -> None:
    stage4, stage5 = continued_stage(5)
    assert (stage5.focal_alpha, stage4.focal_alpha) == (0.5, 0.25)
    assert 0 < stage5.protocol_click_prob < 1 and stage4.protocol_click_prob == 0


def test_committed_sixth_stage_restarts_the_schedule_on_the_fifth() -> None:
    stage5, stage6 = continued_stage(6)
    assert stage6.seed != stage5.seed
    assert (stage6.focal_alpha, stage6.protocol_click_prob) == (0.5, 0.5)


def test_committed_seventh_stage_restarts_the_schedule_on_the_sixth() -> None:
    stage6, stage7 = continued_stage(7)
    assert stage7.seed not in {stage6.seed, stage_config(5).seed}
    assert (stage7.focal_alpha, stage7.protocol_click_prob) == (0.5, 0.5)
    assert stage7.lr_milestones[-1] < stage7.total_steps


def test_make_train_default_runs_every_committed_stage_and_bundles_the_last() -> None:
    last = 1 + len(list(CONFIG.parent.glob("default_model_stage*.json")))  # numbered 2..last
    numbered = [CONFIG.with_name(f"default_model_stage{n}.json") for n in range(2, last + 1)]
    assert all(path.is_file() for path in numbered)
    makefile = (CONFIG.parents[1] / "Makefile").read_text()
    assert f"for n in {' '.join(str(n) for n in range(1, last + 1))}; do" in makefile
    assert f"tools/bundle_default.py runs/default_stage{last}\n" in makefile

"""Training configs and run options: defaults, clear refusals, configs and checkpoints of
older runs (bf16, run options inside the config), and precision "auto" on resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from samkit import devices
from samkit.train import TrainConfig, train
from samkit.train.config import RunOptions, finetune_config, finetune_options

SHIPPED = json.loads((Path(__file__).parent / "goldens" / "shipped_stage_configs.json").read_text())


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_config(**changes: object) -> TrainConfig:
    small = dict(
        model="samkit_tiny", masks_per_step=2, min_rounds=1, max_rounds=1, warmup_steps=1,
        total_steps=20, lr_milestones=(), val_scenes=0, scene_size=256, precision="fp32",
    )  # fmt: skip
    return TrainConfig(**{**small, **changes})  # type: ignore[arg-type]


def test_a_config_file_with_an_unknown_field_is_refused_with_the_known_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1e-4, "learning_rate": 1.0}))
    with pytest.raises(ValueError, match=r"c\.json: .*unknown fields \['learning_rate'\]; the "
                       r"fields are model, seed, .*, lr, "):  # fmt: skip
        TrainConfig.load(path)
    path.write_text(json.dumps({"torch_threads": 2, "val_minutes": 30}))
    with pytest.raises(ValueError, match=r"run options now.*--threads, --val-minutes"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"lr": 1e-4}))
    assert TrainConfig.load(path) == TrainConfig(lr=1e-4)  # the rest: the defaults
    for bad, message in [({"precision": "fp16"}, "precision"), ({"model": "vit_x"}, "vit_x")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_dict(bad)


def test_an_old_config_with_bf16_and_run_options_loads() -> None:
    # the shipped stage configs, as the checkpoints of their runs hold them
    old = {s["run"]: s["config"] for s in SHIPPED}
    assert old["default_stage5"]["bf16"] and not old["default"]["bf16"]
    stage5 = TrainConfig.from_saved(old["default_stage5"])
    assert stage5.precision == "bf16" and stage5.focal_alpha == 0.5 and stage5.seed == 5
    stage1 = TrainConfig.from_saved(old["default"])
    assert stage1.precision == "fp32" and stage1.init_from == "" and stage1.focal_alpha == 0.25
    assert TrainConfig.from_dict({"bf16": True}).precision == "bf16"
    with pytest.raises(ValueError, match="not both"):
        TrainConfig.from_dict({"bf16": True, "precision": "fp32"})
    with pytest.raises(ValueError, match="--threads"):  # a config file may not hold them
        TrainConfig.from_dict(old["default"])


def test_a_checkpoint_of_an_older_run_resumes_in_another_precision(tmp_path: Path) -> None:
    """An older samkit's checkpoint (bf16 flag, run options inside) resumes; precision may
    change on resume (a bf16 GPU run goes on on a CPU in fp32): "auto" picks by this machine."""
    config = tiny_config()
    train(config, tmp_path / "run", max_steps=1)
    (found,) = (tmp_path / "run" / "checkpoints").glob("step_*")
    state = torch.load(found / "state.pt", weights_only=True)
    saved = json.loads(state["config"])
    assert saved["precision"] == "fp32"
    del saved["precision"], saved["focal_alpha"], saved["protocol_click_prob"]
    saved.update(bf16=True, torch_threads=2, log_every=25, checkpoint_minutes=5,
                 keep_checkpoints=3, val_minutes=30)  # fmt: skip
    state["config"] = json.dumps(saved)  # as an older samkit wrote it, on a bf16 machine
    torch.save(state, found / "state.pt")
    auto = dataclasses.replace(config, precision="auto")
    train(auto, tmp_path / "run", resume=True, max_steps=1)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["precision"] == devices.resolve_precision("auto", torch.device("cpu"))
    train(dataclasses.replace(config, precision="fp32"), tmp_path / "run", resume=True, max_steps=1)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "fp32"
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['lr'\]"):
        train(dataclasses.replace(config, lr=0.5), tmp_path / "run", resume=True)


def test_a_new_run_records_the_precision_auto_chose(tmp_path: Path) -> None:
    train(tiny_config(precision="auto"), tmp_path / "run", max_steps=1)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["precision"] == devices.resolve_precision("auto", torch.device("cpu"))
    state = torch.load(
        tmp_path / "run" / "checkpoints" / "step_0000001" / "state.pt", weights_only=True
    )
    assert json.loads(state["config"])["precision"] == written["precision"]


def test_run_options_operate_the_run(tmp_path: Path) -> None:
    options = RunOptions(threads=1, log_every=3, keep_checkpoints=1, checkpoint_minutes=1e-9)
    torch.set_num_threads(2)
    train(tiny_config(), tmp_path / "run", max_steps=4, options=options)
    assert torch.get_num_threads() == 1
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 4]  # every 3 steps, and the last
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert kept == ["step_0000004"]  # one checkpoint a step, only the newest kept
    with pytest.raises(ValueError, match="threads must be positive"):
        RunOptions(threads=0)
    with pytest.raises(ValueError, match="log_every"):
        RunOptions(log_every=0)
    with pytest.raises(ValueError, match="val_minutes"):
        RunOptions(val_minutes=0.0)


def test_finetune_recipe_and_options_follow_the_steps() -> None:
    config = finetune_config("samkit_tiny", 256, steps=300, lr=1e-4, freeze_image_encoder=True)
    assert (config.warmup_steps, config.lr_milestones, config.val_scenes) == (15, (200, 270), 0)
    assert (config.precision, config.loss_size, config.max_rounds) == ("fp32", 256, 3)
    options = finetune_options(300, threads=2)
    assert (options.threads, options.log_every, options.keep_checkpoints) == (2, 15, 2)

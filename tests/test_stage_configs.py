"""samkit_default's training pipeline (configs/default_model.json) and the pipeline runner:
the stages expand to exactly the configs the shipped weights were trained with, `make
train-default` runs the pipeline, and a pipeline run resumes and skips finished stages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samkit.build import variant_registry
from samkit.checkpoints import read_metadata, read_state_dict
from samkit.train import TrainConfig
from samkit.train.__main__ import main
from samkit.train.config import MOVED_TO_RUN_OPTIONS
from samkit.train.pipeline import expand, load_pipeline
from samkit.train.trainer import new_model

ROOT = Path(__file__).parents[1]
PIPELINE = ROOT / "configs" / "default_model.json"
# The seven stage configs the shipped samkit_default was trained with, as committed in 4ca23cb
# (configs/default_model.json, default_model_stage2.json ... _stage7.json), minus their notes.
SHIPPED = json.loads((ROOT / "tests" / "goldens" / "shipped_stage_configs.json").read_text())
# Fields of those files that are run options now (--threads, --log-every, --checkpoint-minutes,
# --val-minutes, --keep-checkpoints): how a run is operated, not what it learns.
RUN_OPTIONS = {
    "torch_threads",
    "log_every",
    "checkpoint_minutes",
    "val_minutes",
    "keep_checkpoints",
}
# Fields some of those files left out, as the runs then took them (the defaults of the time).
LEFT_OUT = {
    "init_from": "",
    "init_only": [],
    "focal_alpha": 0.25,
    "protocol_click_prob": 0.0,
    "text_encoder": "",
    "text_prob": 0.0,
    "text_only_prob": 0.5,
    "text_lr": 0.0,
    "text_from_crops": False,
}


def shipped_in_todays_terms(config: dict) -> dict:
    """A shipped stage config with today's field names, spelled out here rather than through
    TrainConfig.from_saved (the code under test): bf16 true/false is precision bf16/fp32."""
    now = {k: v for k, v in config.items() if k not in RUN_OPTIONS | {"bf16"}}
    return {**LEFT_OUT, **now, "precision": "bf16" if config["bf16"] else "fp32"}


def test_the_pipeline_expands_to_the_shipped_stage_configs() -> None:
    assert set(MOVED_TO_RUN_OPTIONS) == RUN_OPTIONS
    stages = load_pipeline(PIPELINE)
    assert [s.name for s in stages] == [s["run"] for s in SHIPPED]
    for stage, shipped in zip(stages, SHIPPED, strict=True):
        expanded = json.loads(json.dumps(stage.config.to_dict()))
        del expanded["notes"]
        assert expanded == shipped_in_todays_terms(shipped["config"]), stage.name
    assert [s.config.init_from for s in stages[1:]] == [
        f"runs/{s.name}/model.safetensors" for s in stages[:-1]
    ]


def test_each_stage_trains_on_fresh_scenes_under_the_same_validation() -> None:
    stages = load_pipeline(PIPELINE)
    seeds = [s.config.train_scene_seed for s in stages]
    assert len(set(seeds)) == len(seeds) and not {2, 3} & set(seeds)  # 3: the final eval's
    assert {s.config.val_scene_seed for s in stages} == {2}
    for stage in stages:
        with torch.device("meta"):
            model = variant_registry[stage.config.model]()
        assert model.img_size == stage.config.scene_size
        assert set(stage.config.notes) <= set(stage.config.to_dict()) | {"why"}
    with torch.device("meta"):
        last = variant_registry[stages[-1].config.model]()
    assert stages[-1].config.model == "samkit_default"
    assert 5e6 < sum(p.numel() for p in last.parameters()) < 6.25e6  # bundle <= 25 MB


def test_a_stage_with_init_only_takes_the_previous_models_trunk() -> None:
    stages = load_pipeline(PIPELINE)
    (i,) = [i for i, s in enumerate(stages) if s.config.init_only]
    before, wide = stages[i - 1].config, stages[i].config
    assert (before.model, wide.model) == ("samkit_narrow", "samkit_default")
    with torch.device("meta"):  # the trunk's tensors fit; the run itself checks every shape
        trunk = variant_registry[before.model]().state_dict()
    started = new_model(wide, {k: torch.zeros_like(v, device="cpu") for k, v in trunk.items()})
    taken = [k for k in started.state_dict() if k.startswith(wide.init_only)]
    assert len(taken) > 50 and all(not started.state_dict()[k].any() for k in taken)
    assert not any(s.config.init_only for s in stages[i + 1 :])  # init_only is not inherited


def test_make_train_default_runs_the_pipeline_and_bundles_its_last_stage() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\ntrain-default:") :].split("\n\n")[0]
    assert "-m samkit.train --pipeline configs/default_model.json --runs runs" in target
    assert "tools/bundle_default.py --pipeline configs/default_model.json" in target
    assert not re.search(r"stage\s*\d|_stage|for n in", target)


# -- the runner, on a tiny pipeline --------------------------------------------------------------
TINY_BASE = dict(
    model="samkit_tiny", scene_size=256, masks_per_step=2, min_rounds=1, max_rounds=1,
    warmup_steps=1, total_steps=2, lr_milestones=[], val_scenes=0, precision="fp32",
)  # fmt: skip


def write_pipeline(path: Path, stages: list[dict[str, object]], **base: object) -> Path:
    path.write_text(json.dumps({"base": {**TINY_BASE, **base}, "stages": stages}))
    return path


def run(pipeline: Path, runs: Path, capsys: pytest.CaptureFixture, *more: str) -> tuple[int, str]:
    code = main(["--pipeline", str(pipeline), "--runs", str(runs), "--threads", "1", *more])
    return code, capsys.readouterr().out


def test_a_pipeline_runs_its_stages_in_order_resumes_and_skips_finished_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # stage b trains at learning rate 0, so its model is exactly the weights it started from
    pipeline = write_pipeline(tmp_path / "p.json", [{"name": "a"}, {"name": "b", "lr": 0.0}])
    runs = tmp_path / "runs"
    code, out = run(pipeline, runs, capsys, "--max-steps", "1")
    assert code == 1 and "stage 1/2 a: starting" in out and "stopped at step 1 of 2" in out
    assert not (runs / "a" / "model.safetensors").exists() and not (runs / "b").exists()
    code, out = run(pipeline, runs, capsys)
    assert code == 0 and "stage 1/2 a: resuming" in out and "stage 2/2 b: starting" in out
    a, b = (read_state_dict(runs / n / "model.safetensors") for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    started = json.loads((runs / "b" / "config.json").read_text())["init_from"]
    assert started == (runs / "a" / "model.safetensors").as_posix()
    logs = {n: (runs / n / "log.jsonl").read_text() for n in "ab"}
    code, out = run(pipeline, runs, capsys)
    assert code == 0 and "starting" not in out and "resuming" not in out
    assert "stage 1/2 a: finished (2 steps), skipped" in out and "2/2 b: finished" in out
    assert logs == {n: (runs / n / "log.jsonl").read_text() for n in "ab"}  # untouched
    longer = write_pipeline(tmp_path / "p.json", [{"name": "a", "total_steps": 3}], lr=0.0)
    with pytest.raises(ValueError, match=r"differs .* \['lr'\]"):  # a is not done: resumes
        run(longer, runs, capsys)


def test_bad_pipelines_are_refused_with_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stage: dict[str, object] = {"name": "a"}
    bad: dict[str, list[dict[str, object]]] = {
        r"stage 'b': bad training config: unknown fields \['learning_rate'\]": [
            stage, {"name": "b", "learning_rate": 0.1}],
        "stage 'b' names init_from": [stage, {"name": "b", "init_from": "x.safetensors"}],
        "two stages are named 'a'": [stage, stage],
        "a plain folder name": [{"name": "../a"}],
        "each stage needs a name": [{"lr": 0.1}],
    }  # fmt: skip
    for message, stages in bad.items():
        with pytest.raises(ValueError, match=message):
            load_pipeline(write_pipeline(tmp_path / "p.json", stages))
    with pytest.raises(ValueError, match=r"unknown pipeline keys \['stage'\]"):
        expand({"stages": [stage], "stage": []})
    with pytest.raises(ValueError, match="belong to a stage"):
        expand({"base": {"init_from": "x.safetensors"}, "stages": [stage]})
    with pytest.raises(SystemExit):  # a pipeline is no config: the CLI says which flag to use
        main(["--config", str(PIPELINE), "--out", str(tmp_path / "run")])
    assert "pass it with --pipeline" in capsys.readouterr().err
    first = expand({"stages": [{"name": "a", "init_from": "w.safetensors"}, {"name": "b"}]}, "r")
    assert [s.config.init_from for s in first] == ["w.safetensors", "r/a/model.safetensors"]
    assert first[0].config == TrainConfig(init_from="w.safetensors")  # no base: the defaults


def test_bundle_default_ships_the_last_stage_of_a_pipeline(tmp_path: Path) -> None:
    base = dict(model="samkit_default", scene_size=128, total_steps=1)
    pipeline = write_pipeline(tmp_path / "p.json", [{"name": "x"}, {"name": "y"}], **base)
    runs, target = tmp_path / "runs", tmp_path / "bundled.safetensors"
    tool = [sys.executable, str(ROOT / "tools" / "bundle_default.py"), "--pipeline", str(pipeline)]
    tool += ["--runs", str(runs), "--target", str(target)]
    assert main(["--pipeline", str(pipeline), "--runs", str(runs), "--threads", "1"]) == 0
    (runs / "y" / "model.safetensors").unlink()  # as if killed before writing its final model
    done = subprocess.run(tool, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "stage y is not finished" in done.stderr
    assert main(["--pipeline", str(pipeline), "--runs", str(runs), "--threads", "1"]) == 0
    done = subprocess.run(tool, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metadata(target)["samkit_train_config"] == f"{pipeline}#y"
    shipped, trained = read_state_dict(target), read_state_dict(runs / "y" / "model.safetensors")
    assert shipped.keys() == trained.keys()
    assert all(torch.equal(shipped[k], trained[k]) for k in shipped)

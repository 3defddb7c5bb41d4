"""Data-parallel training: two processes under torchrun (gloo, CPU) take the same steps as one
process that trains on both processes' images at once; the backend follows the device."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samkit.checkpoints import read_state_dict
from samkit.train import TrainConfig, distributed, train
from samkit.train.config import RunOptions

GLOO_ABORT = "terminate called without an active exception"


def small_config(**changes: object) -> TrainConfig:
    config = TrainConfig(precision="fp32")
    small = dict(
        model="samkit_tiny", masks_per_step=2, min_rounds=1, max_rounds=2, lr=2e-3,
        warmup_steps=1, total_steps=100, lr_milestones=(50,), val_scenes=0, scene_size=256,
    )  # fmt: skip
    return dataclasses.replace(config, **{**small, **changes})  # type: ignore[arg-type]


def test_two_processes_equal_one_process_with_their_images(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(small_config(images_per_step=1).to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "samkit.train", "--config", str(config_path), "--out", str(tmp_path / "ddp"),
        "--max-steps", "1", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and done.stderr.startswith(GLOO_ABORT):
        # Seen once (a CI run on a 2-core machine, 2026-12-06): one process aborted in C++
        # ("terminate called without an active exception") with no Python traceback, and the
        # same test passed on its next three runs. One more try of the whole run keeps that
        # abort from failing CI; any other failure, or the abort twice, still fails.
        shutil.rmtree(tmp_path / "ddp", ignore_errors=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]  # only rank 0 writes the log
    ddp = read_state_dict(tmp_path / "ddp" / "checkpoints" / "step_0000001" / "model.safetensors")

    # One step: later Adam steps divide by tiny second moments, which magnifies the rounding
    # differences of summing gradients in another order far beyond any sensible tolerance.
    one = RunOptions(threads=1)  # as each process: another thread count sums in another order
    single = train(small_config(images_per_step=2), tmp_path / "one", max_steps=1, options=one)
    before = train(small_config(images_per_step=2), tmp_path / "zero", max_steps=0, options=one)
    weights, start = single.state_dict(), before.state_dict()
    moved = max(float((weights[k] - start[k]).abs().max()) for k in weights)
    assert moved > 1e-4  # the steps did change the weights...
    for key, value in weights.items():  # ...and both runs changed them alike
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5)


def test_the_process_group_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchrun's environment for process 1 of 2: CUDA means one GPU per process (nccl), and
    # a device another process owns, or one no backend serves, is refused before joining.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="cuda:LOCAL_RANK"):
        distributed.setup(torch.device("cuda", 0))
    with pytest.raises(ValueError, match=r"cuda.*nccl.*cpu.*gloo"):
        distributed.setup(torch.device("mps"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="LOCAL_RANK 1"):
            distributed.setup(torch.device("cuda"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup(torch.device("cpu")) == (0, 1, torch.device("cpu"))

"""A training pipeline: stages that run one after another, each starting from the weights the
stage before it wrote, in one JSON file.

    {"base": {...recipe...},
     "stages": [{"name": "default", ...}, {"name": "default_stage2", "lr": 2e-4, ...}, ...]}

A stage's `name` is its run folder under the runs folder. Its config is the previous stage's
(the first stage's: `base`) with the fields the stage names changed, except the two that say
how a stage starts: `init_from` is `RUNS/<previous stage>/model.safetensors` for every stage
after the first, and `init_only` holds only for the stage that names it. Each entry may carry
`notes` (field -> why), which go into that stage's config alone.

`run_pipeline` runs the stages in order; a stage whose run folder holds its final model is
finished and skipped, one with checkpoints resumes, so the same command carries a pipeline
through any number of kills and restarts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .checkpoint import LATEST, latest_checkpoint
from .config import TrainConfig

STARTS = ("init_from", "init_only")  # how a stage starts: never inherited by the next one


@dataclass(frozen=True)
class Stage:
    name: str  # its run folder under the runs folder
    config: TrainConfig  # expanded: every field, init_from derived


def load_pipeline(
    path: str | os.PathLike[str], runs: str | os.PathLike[str] = "runs"
) -> list[Stage]:
    """The stages of the pipeline file `path`, with `init_from` pointing into `runs`."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read training pipeline {path}: {e}") from e
    try:
        return expand(values, runs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def expand(pipeline: Mapping[str, Any], runs: str | os.PathLike[str] = "runs") -> list[Stage]:
    """The stages of a pipeline given as JSON values (see the module docstring)."""
    if not isinstance(pipeline, Mapping) or not pipeline.get("stages"):
        raise ValueError('a pipeline is {"base": {...}, "stages": [{"name": ...}, ...]}')
    unknown = sorted(set(pipeline) - {"base", "stages", "notes"})
    if unknown:
        raise ValueError(f"unknown pipeline keys {unknown}; expected base, stages, notes")
    current = dict(pipeline.get("base", {}))
    current.pop("notes", None)
    if any(k in current for k in STARTS):
        raise ValueError("init_from and init_only belong to a stage, not to the base recipe")
    stages: list[Stage] = []
    for entry in pipeline["stages"]:
        entry = dict(entry)
        name = entry.pop("name", None)
        if not isinstance(name, str) or not name or Path(name).name != name or name[0] == ".":
            raise ValueError(f"each stage needs a name, a plain folder name; got {name!r}")
        if any(name == s.name for s in stages):
            raise ValueError(f"two stages are named {name!r}")
        if stages and "init_from" in entry:
            raise ValueError(
                f"stage {name!r} names init_from, but a stage after the first starts from the "
                f"previous stage's weights ({stages[-1].name}/model.safetensors)"
            )
        notes = entry.pop("notes", {})
        current = {k: v for k, v in current.items() if k not in STARTS} | entry
        if stages:
            current["init_from"] = Path(runs, stages[-1].name, "model.safetensors").as_posix()
        try:
            config = TrainConfig.from_dict({**current, "notes": notes})
        except (TypeError, ValueError) as e:
            raise ValueError(f"stage {name!r}: {e}") from e
        stages.append(Stage(name, config))
    return stages


def trained_steps(out: Path) -> int | None:
    """The step of the last checkpoint in run folder `out`, or None when it has none."""
    pointer = out / "checkpoints" / LATEST
    return int(json.loads(pointer.read_text())["step"]) if pointer.is_file() else None


def is_finished(out: Path, config: TrainConfig) -> bool:
    """Whether the run in folder `out` is done: `train` writes model.safetensors (atomically)
    only after its checkpoint at `total_steps`, so both must be there. A run whose total_steps
    was raised since is not done, and resumes."""
    steps = trained_steps(out)
    return (
        (out / "model.safetensors").is_file() and steps is not None and steps >= config.total_steps
    )


def run_pipeline(
    stages: list[Stage],
    runs: Path,
    train: Callable[..., object],
    *,
    say: Callable[[str], None] = print,
) -> bool:
    """Run `stages` into `runs`/<name> in order with `train(config, out, resume=...)`: finished
    stages are skipped, a stage with checkpoints resumes. Stops at the first stage that does
    not finish (a step limit; a signal raises `Interrupted` out of `train`). Returns whether
    every stage is finished."""
    tell = say if int(os.environ.get("RANK", "0")) == 0 else (lambda _: None)  # torchrun's
    for i, stage in enumerate(stages, 1):
        out = runs / stage.name
        where = f"stage {i}/{len(stages)} {stage.name}"
        if is_finished(out, stage.config):
            tell(f"{where}: finished ({stage.config.total_steps} steps), skipped")
            continue
        resume = latest_checkpoint(out / "checkpoints") is not None
        tell(f"{where}: {'resuming' if resume else 'starting'} in {out}")
        train(stage.config, out, resume=resume)
        if dist.is_initialized():  # under torchrun: rank 0 writes the final model last
            dist.barrier()
        if not is_finished(out, stage.config):
            steps = trained_steps(out) or 0
            tell(f"{where}: stopped at step {steps} of {stage.config.total_steps}; the same "
                 "command resumes it")  # fmt: skip
            return False
    return True

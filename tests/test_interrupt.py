"""Ctrl-C (SIGINT) and SIGTERM stop every long command cleanly: what is written is whole, no
temporary file is left, one line says what was done and how to go on, the exit code is
128 + the signal (130, 143) and there is no traceback; the same command then resumes.

Each signal lands at a known point. The commands' last inputs are named pipes, whose reader
waits until a writer comes (none does): once the outputs of the inputs before them exist,
the command can only be waiting there. The eval writes nothing as it goes, so its test waits
until the kernel says the process is blocked opening its pipe (/proc/PID/wchan, Linux).
Training cannot finish (a million steps): the signal comes once it has begun (a checkpoint or
a log record is there), and the step in progress is finished and saved.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from samkit.interrupt import Interrupted, raise_on_signal, stop_on_signal

FAST = ["--model", "samkit_tiny", "--points-per-side", "6", "--pred-iou-thresh", "0"]
FAST += ["--stability-score-thresh", "0", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def start(args: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a command with its stdout and stderr in the file `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=ENV, **popen)


def finish(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    """Wait for the interrupted command; its exit code and output, which has no traceback."""
    code = proc.wait(timeout=300)
    text = log.read_text()
    assert "Traceback" not in text, text
    return code, text


def assert_whole(out: Path, pattern: str, expected: set[Path]) -> None:
    """The outputs are `expected` (relative to `out`), each complete JSON; no temporary file."""
    found = {p.relative_to(out) for p in out.rglob(pattern)}
    assert found == expected
    for path in found:
        json.loads((out / path).read_text())
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# -- the mechanism, in this process ----------------------------------------------------------
def test_a_signal_raises_interrupted_and_the_old_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as caught, raise_on_signal():
        os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.exit_code == 143 and str(caught.value) == "interrupted (SIGTERM)"
    assert {sig: signal.getsignal(sig) for sig in before} == before
    error = Interrupted(signal.SIGINT, "6 images done, 2 left")
    assert error.exit_code == 130
    assert str(error) == "interrupted (SIGINT): 6 images done, 2 left"


def test_stop_on_signal_sets_a_flag_then_a_second_signal_raises(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with stop_on_signal("this step") as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGINT)
        assert stop and stop.signum == signal.SIGINT  # no exception: the loop decides
        assert "stopping after this step" in capfd.readouterr().err
        with pytest.raises(Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signum == signal.SIGTERM


# -- the commands, as subprocesses -----------------------------------------------------------
def test_amg_sigint_keeps_whole_outputs_and_the_rerun_resumes(
    tmp_path: Path, make_images: Any, wait_until: Any, named_pipes: Any
) -> None:
    paths = make_images(tmp_path / "in", 6)
    pipes = named_pipes(tmp_path / "in" / "c", ["img6.png", "img7.png"])
    out, log = tmp_path / "out", tmp_path / "log.txt"
    done = {p.relative_to(tmp_path / "in").with_suffix(".json") for p in paths}
    cmd = [sys.executable, "-m", "samkit.cli", "amg", str(tmp_path / "in"), "--out", str(out)]
    cmd += [*FAST, "--format", "sa1b"]
    proc = start(cmd, log)
    wait_until(lambda: all((out / p).exists() for p in done), proc, log)
    proc.send_signal(signal.SIGINT)
    code, text = finish(proc, log)
    assert code == 130
    assert text.strip().endswith(
        "samkit: interrupted (SIGINT): 6 images done, 2 left; run the same command again to resume"
    )
    assert_whole(out, "img*.json", done)
    mtimes = {p: (out / p).stat().st_mtime_ns for p in done}

    for image, pipe in zip(make_images(tmp_path / "late", 8)[6:], pipes, strict=True):
        os.replace(image, pipe)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "2 done, 6 skipped" in r.stdout
    assert_whole(out, "img*.json", done | {Path("c/img6.json"), Path("c/img7.json")})
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())  # not redone


def test_deid_sigterm_keeps_whole_outputs_and_the_rerun_resumes(
    tmp_path: Path, make_images: Any, wait_until: Any, named_pipes: Any
) -> None:
    paths = make_images(tmp_path / "in", 3)
    (pipe,) = named_pipes(tmp_path / "in" / "c", ["img3.png"])
    out, log = tmp_path / "out", tmp_path / "log.txt"
    done = {p.relative_to(tmp_path / "in").with_suffix(".deid.json") for p in paths}
    cmd = [sys.executable, "-m", "samkit.cli", "deid", str(tmp_path / "in"), "--out", str(out)]
    cmd += ["--no-progress"]
    proc = start(cmd, log)
    wait_until(lambda: all((out / p).exists() for p in done), proc, log)
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, log)
    assert code == 143
    assert text.strip().endswith(
        "samkit: interrupted (SIGTERM): 3 images done, 1 left; run the same command again to resume"
    )
    assert_whole(out, "*.deid.json", done)

    os.replace(make_images(tmp_path / "late", 4)[3], pipe)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "1 done, 3 skipped" in r.stdout
    assert_whole(out, "*.deid.json", done | {Path("c/img3.deid.json")})


def blocked_opening_a_pipe(pid: int) -> bool:
    """Whether process `pid` waits in open() for the other end of a named pipe (Linux)."""
    wchan = Path(f"/proc/{pid}/wchan")
    if not wchan.exists():
        pytest.skip("needs Linux's /proc/PID/wchan to see where the process waits")
    return wchan.read_text().strip() == "wait_for_partner"


def test_eval_sigint_midway_writes_nothing(
    tmp_path: Path, write_sa1b_scenes: Any, wait_until: Any
) -> None:
    data = write_sa1b_scenes(tmp_path / "data", seed=4, n=4, size=64)
    (data / "sa_3.png").unlink()
    os.mkfifo(data / "sa_3.png")  # the 4th scene's image: the eval waits there
    out, log = tmp_path / "out", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "samkit.cli", "eval", "--model", "samkit_tiny"]
    cmd += ["--sa1b", str(data), "--clicks", "1,2", "--out", str(out)]
    proc = start(cmd, log)
    wait_until(lambda: blocked_opening_a_pipe(proc.pid), proc, log)
    proc.send_signal(signal.SIGINT)
    code, text = finish(proc, log)
    assert code == 130
    assert text.strip().endswith(
        "samkit: interrupted (SIGINT): 3 images evaluated; no results were written; run the "
        "same command again to evaluate from the start"
    )
    assert not out.exists()


def test_train_sigterm_saves_a_checkpoint_and_resume_goes_on(
    tmp_path: Path, wait_until: Any
) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "model": "samkit_tiny",
                "scene_size": 256,
                "masks_per_step": 2,
                "min_rounds": 1,
                "max_rounds": 1,
                "warmup_steps": 1,
                "total_steps": 1_000_000,  # never finishes: only the signal stops it
                "lr_milestones": [900_000],
                "val_scenes": 0,
                "precision": "fp32",
            }
        )
    )
    run, log = tmp_path / "run", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "samkit.train", "--config", str(config), "--out", str(run)]
    cmd += ["--device", "cpu", "--threads", "1", "--log-every", "1"]
    cmd += ["--checkpoint-minutes", "0.0001"]  # about every step
    proc = start(cmd, log)
    wait_until(lambda: (run / "checkpoints" / "latest.json").exists(), proc, log)
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, log)
    assert code == 143
    match = re.search(
        r"python -m samkit\.train: interrupted \(SIGTERM\): stopped at step (\d+) of 1000000; "
        r"checkpoint saved in (\S+); run the same command with --resume to go on\n$",
        text,
    )
    assert match, text
    step = int(match[1])
    assert Path(match[2]) == run / "checkpoints"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == step  # the step it stopped at is saved
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]  # no half-written file

    cmd += ["--resume", "--max-steps", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {run / 'checkpoints'}" in r.stdout
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, step + 2))


def test_finetune_sigint_stops_after_a_checkpoint_and_measures_nothing(
    tmp_path: Path, write_sa1b_scenes: Any, wait_until: Any
) -> None:
    data = write_sa1b_scenes(tmp_path / "data", seed=4, n=3, size=64)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "samkit.cli", "finetune", "--model", "samkit_tiny"]
    cmd += ["--sa1b", str(data), "--out", str(run), "--steps", "1000000", "--freeze-encoder"]
    cmd += ["--threads", "1", "--device", "cpu"]
    proc = start(cmd, log)
    wait_until(lambda: (run / "log.jsonl").is_file(), proc, log)  # training has begun
    proc.send_signal(signal.SIGINT)
    code, text = finish(proc, log)
    assert code == 130
    match = re.search(
        r"samkit: interrupted \(SIGINT\): stopped at step (\d+) of 1000000; checkpoint saved in "
        r"(\S+); run the same command with --resume to go on\n$",
        text,
    )
    assert match, text
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == int(match[1])
    assert not (run / "model.safetensors").exists()
    assert not (run / "finetune_report.json").exists()  # no "after" measured on a cut run


def test_engine_ctrl_c_shuts_ray_down_and_the_rerun_resumes(
    tmp_path: Path, make_images: Any, wait_until: Any, named_pipes: Any
) -> None:
    pytest.importorskip("ray")
    paths = make_images(tmp_path / "in", 4)
    pipes = named_pipes(tmp_path / "in" / "c", ["img4.png", "img5.png"])
    out, log = tmp_path / "out", tmp_path / "log.txt"
    done = {p.relative_to(tmp_path / "in").with_suffix(".json") for p in paths}
    cmd = [sys.executable, "-m", "samkit.cli", "engine", str(tmp_path / "in"), "--out", str(out)]
    cmd += [*FAST, "--concurrency", "1"]
    proc = start(cmd, log, start_new_session=True)
    wait_until(lambda: all((out / p).exists() for p in done), proc, log)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the driver and the Ray it started
    code, text = finish(proc, log)
    assert code == 130
    assert text.strip().endswith(
        "samkit: interrupted (SIGINT): 4 images done, 2 left; run the same command again to resume"
    )
    assert_whole(out, "img*.json", done)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["outputs"], manifest["missing"]) == (4, 2)

    for image, pipe in zip(make_images(tmp_path / "late", 6)[4:], pipes, strict=True):
        os.replace(image, pipe)  # the actor that waited on the old pipe was shut down
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "2 done, 4 skipped" in r.stdout
    assert_whole(out, "img*.json", done | {Path("c/img4.json"), Path("c/img5.json")})

"""The docs cannot rot: every `samkit` command in docs/guide.md runs, and every command's
--help has an example.

The guide's commands run in document order in one temporary folder prepared with what they
name (photos/, examples/, my_sa1b/, held_out/, small.safetensors), with the bundled
samkit_default model. Commands that need what a test machine lacks are parsed with samkit's
own argument parser (so a renamed or removed flag still fails) and their --help is shown,
for the reason given in HELP_ONLY. The `python -m samkit.train` and `torchrun` lines are not
`samkit` commands: tests/test_train.py and tests/test_train_distributed.py run them.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from samkit import __version__
from samkit.cli import _parser, main
from samkit.cli.evaluate import route

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"

# pattern -> why the command is only parsed and its --help shown
HELP_ONLY = {
    r"--model vit_[bhlt]\b|weights (get|path) |sam_vit_": "needs Meta's weights, which a "
    "test machine cannot download (the download itself is tested against a local server in "
    "tests/test_checkpoints.py)",
    r"^samkit serve": "serves until stopped; tests/test_serve_*.py run the server",
    r"^samkit engine": "starts Ray or needs a cluster; tests/test_scale_pipeline.py runs the "
    "engine on a local Ray",
    r"^(?!.*samkit_text).*--text\b|ft_text/": "needs a model with a text token (ft_text/), "
    "which samkit finetune --text trains in minutes; tests/test_cli_text.py, "
    "test_eval_text.py, test_export_text.py and test_finetune_text.py run these commands on "
    "one (the samkit_text lines run here)",
}


def guide_commands(text: str) -> list[str]:
    """The `samkit ...` lines of the bash/console blocks, continuations joined, '$ ' dropped."""
    commands = []
    for block in re.findall(r"```(?:bash|console)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("samkit "):
                commands.append(line)
    return commands


def help_only_reason(command: str) -> str | None:
    return next((why for pat, why in HELP_ONLY.items() if re.search(pat, command)), None)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_sa1b_scenes: Any) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "cache"))
    for folder in ("photos", "examples"):
        (tmp_path / folder).mkdir()
        shutil.copy(ROOT / "examples" / "shapes.png", tmp_path / folder)
    write_sa1b_scenes(tmp_path / "my_sa1b", seed=11, n=2, size=128)
    write_sa1b_scenes(tmp_path / "held_out", seed=12, n=1, size=128)
    main(["weights", "convert", str(bundled()), str(tmp_path / "small.safetensors")])
    return tmp_path


def bundled() -> Path:
    from samkit.loading import bundled_path

    return bundled_path("samkit_default")


def test_guide_commands_are_found() -> None:
    text = "```bash\nsamkit a --x 1 \\\n    --y 2   # note\nls\n```\n```console\n$ samkit b\n```"
    assert guide_commands(text) == ["samkit a --x 1      --y 2   # note", "samkit b"]
    commands = guide_commands(GUIDE.read_text())
    subcommands = {route(shlex.split(c, comments=True)[1:])[0] for c in commands}
    assert set(_subparsers(_parser())) <= subcommands


def test_every_guide_command_runs(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    failures = []
    for command in guide_commands(GUIDE.read_text()):
        argv = shlex.split(command, comments=True)[1:]
        reason = help_only_reason(command)
        if reason is not None:
            routed = route(argv)  # `eval TASK` is the parser `eval-TASK`
            _parser().parse_args(routed)  # SystemExit (a failure) if a flag no longer exists
            words = routed[:2] if routed[0] == "weights" else routed[:1]
            with pytest.raises(SystemExit) as done:
                main([*words, "--help"])
            if done.value.code != 0 or "example" not in capsys.readouterr().out:
                failures.append(f"{command}: --help failed")
            continue
        try:
            code = main(argv)
        except SystemExit as exc:  # --version and --help exit
            code = exc.code
        out = capsys.readouterr()
        if code != 0:
            failures.append(f"{command}: exit {code}\n{out.err[-500:]}")
        elif "--out" in argv and not Path(argv[argv.index("--out") + 1]).exists():
            failures.append(f"{command}: wrote nothing to --out")
    assert not failures, "\n".join(failures)


def test_help_only_commands_say_why() -> None:
    commands = guide_commands(GUIDE.read_text())
    skipped = [c for c in commands if help_only_reason(c)]
    assert 0 < len(skipped) < len(commands) / 2  # most of the guide runs for real


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _all_commands() -> list[list[str]]:
    found = []
    for name, sub in _subparsers(_parser()).items():
        found.append([name])
        found += [[name, inner] for inner in _subparsers(sub)]
    return found


@pytest.mark.parametrize("words", _all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(
    words: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    typed = " ".join(words).replace("eval-", "eval ", 1)  # the parser eval-TASK is `eval TASK`
    assert re.search(r"^examples?:\n  samkit " + typed, text, flags=re.M), text[-300:]


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"samkit {__version__}"


def test_every_readme_command_parses(workdir: Path) -> None:
    """README's `samkit` lines name real commands with their required options (each is
    parsed by samkit's own parser, in the guide's folder; a missing --out or a renamed flag
    fails here)."""
    commands = guide_commands((ROOT / "README.md").read_text())
    assert commands
    for command in commands:
        argv = route(shlex.split(command, comments=True)[1:])
        for word in argv:  # the folders it names stand in for the reader's own
            if word.endswith("/") and "://" not in word:
                (workdir / word).mkdir(parents=True, exist_ok=True)
        try:
            _parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README: {command}: the parser exits ({exc.code})")

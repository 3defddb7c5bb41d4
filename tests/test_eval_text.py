"""Text-prompt evaluation (samkit.eval.text, `samkit eval --text`): the protocol's IoUs and
clicks on masks with known answers, summaries, deterministic phrase sets that keep held-out
synonyms apart, and the command end to end."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.data.phrases import COLOUR_WORDS, PART_WORDS, SHAPE_WORDS
from samkit.data.synthetic import make_scene
from samkit.eval.clicks import first_click
from samkit.eval.text import (
    COLUMNS,
    TextScores,
    phrase_columns,
    results_markdown,
    scene_prompts,
    summarize_text,
    text_protocol,
)

HEADER = "| kind | n | text@0 | text@1 | text@3 | points@1 | points@3 |"


class Recorder:
    """A `Predict` that always answers `answer` (B, H, W) and records what it was given."""

    def __init__(self, answer: np.ndarray) -> None:
        self.answer = answer
        self.calls: list[tuple[np.ndarray, np.ndarray, torch.Tensor | None]] = []

    def __call__(
        self, coords: np.ndarray, labels: np.ndarray, mask_input: torch.Tensor | None
    ) -> tuple[np.ndarray, torch.Tensor]:
        self.calls.append((coords.copy(), labels.copy(), mask_input))
        return self.answer, torch.full((len(coords), 1, 8, 8), float(len(self.calls)))


def square(y0: int, y1: int, x0: int, x1: int, size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_protocol_perfect_answers_score_one_and_follow_the_clicks() -> None:
    targets = np.stack([square(4, 14, 4, 14), square(18, 30, 10, 28)])
    predict = Recorder(targets.copy())
    ious = text_protocol(predict, targets, 3)
    assert ious.shape == (2, 4) and np.all(ious == 1.0)
    coords, labels, mask_input = zip(*predict.calls, strict=True)
    assert [c.shape[1] for c in coords] == [0, 1, 2, 3]  # text alone, then one click more each
    assert mask_input[0] is None and mask_input[1] is None  # the first click has no mask input
    assert float(mask_input[2][0, 0, 0, 0]) == 2 and float(mask_input[3][0, 0, 0, 0]) == 3
    for b, target in enumerate(targets):  # a perfect mask: clicks on the target's interior
        assert [tuple(xy) for xy in coords[3][b]] == [first_click(target)] * 3
        assert list(labels[3][b]) == [1, 1, 1]


def test_protocol_known_iou_and_corrective_clicks() -> None:
    target = square(10, 20, 10, 20)
    missing_half = square(10, 20, 10, 15)  # half the target: IoU 0.5, a false negative
    double = square(10, 20, 10, 30)  # the target and as much again: IoU 0.5, a false positive
    targets = np.stack([target, target])
    predict = Recorder(np.stack([missing_half, double]))
    ious = text_protocol(predict, targets, 2)
    assert ious == pytest.approx(np.full((2, 3), 0.5))
    coords, labels, _ = predict.calls[-1]
    (x, y), label = coords[0, 1], labels[0, 1]  # second click on the missed half
    assert label == 1 and 15 <= x < 20 and 10 <= y < 20
    (x, y), label = coords[1, 1], labels[1, 1]  # second click on the extra area
    assert label == 0 and 20 <= x < 30 and 10 <= y < 20


def test_columns_pick_the_click_counts() -> None:
    text_ious = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    point_ious = np.array([[0.11, 0.22, 0.33], [0.44, 0.55, 0.66]])
    cols = phrase_columns(text_ious, point_ious)
    assert list(cols) == list(COLUMNS)
    assert list(cols["text@0"]) == [0.1, 0.5] and list(cols["text@3"]) == [0.4, 0.8]
    assert list(cols["points@1"]) == [0.11, 0.44] and list(cols["points@3"]) == [0.33, 0.66]


def test_summary_rows_and_table() -> None:
    ious = {c: np.array([0.2, 0.6, 1.0]) for c in COLUMNS}
    ious["text@0"] = np.array([0.0, 1.0, 0.5])
    scores = TextScores(["a", "b", "c"], ["colour", "colour", "part"], ious)
    rows = summarize_text(scores)
    assert [(r.kind, r.n) for r in rows] == [("all", 3), ("colour", 2), ("part", 1)]
    mean, half = rows[1].miou["text@0"]
    assert mean == 0.5 and half == pytest.approx(1.959964 * math.sqrt(0.5) / math.sqrt(2))
    assert rows[2].miou["points@3"] == (1.0, 0.0)
    table = results_markdown({"held-out synonyms": rows}).splitlines()
    assert table[0] == "## held-out synonyms" and table[2] == HEADER
    assert table[5].startswith("| colour | 2 | 0.500 ± 0.980 | 0.400 ± ")


def _synonyms(pick: int) -> list[str]:
    tables = [*COLOUR_WORDS.values(), *SHAPE_WORDS.values(), PART_WORDS]
    return sorted({w for t in tables for w in t[pick]}, key=len, reverse=True)


def _pattern(word: str) -> str:
    return rf"\b{re.escape(word)}(es|s)?\b"  # plurals too: "all the azure disks"


def test_phrases_are_deterministic_and_held_out_words_stay_apart() -> None:
    train, held = _synonyms(0), _synonyms(1)
    for index in range(3):
        scene = make_scene(7, index, 64)
        prompts = scene_prompts(7, index, scene)
        assert prompts == scene_prompts(7, index, scene)
        assert list(prompts) == ["training vocabulary", "held-out synonyms"]
        pairs = {name: [(p.target, p.kind) for p in ps] for name, ps in prompts.items()}
        assert pairs["training vocabulary"] == pairs["held-out synonyms"]  # same objects
        assert prompts["held-out synonyms"], "scene without phrases: pick another seed"
        for phrase in prompts["held-out synonyms"]:
            rest, found = phrase.text, 0
            for word in held:  # longest first: "jet black" before a training "black"
                rest, n = re.subn(_pattern(word), " ", rest)
                found += n
            assert found, phrase.text
            assert not [w for w in train if re.search(_pattern(w), rest)], phrase.text
        for phrase in prompts["training vocabulary"]:
            assert not [w for w in held if re.search(_pattern(w), phrase.text)], phrase.text
    other = scene_prompts(8, 0, make_scene(7, 0, 64))  # another seed: other words
    assert other != scene_prompts(7, 0, make_scene(7, 0, 64))


def samkit(*args: str) -> subprocess.CompletedProcess[str]:
    # One torch thread: the test's few small batches gain nothing from two, and on a busy
    # machine idle threads spinning for work cost several times the run itself.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "samkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """samkit_default with a freshly enabled (untrained) text head, as a weights file."""
    import samkit
    from samkit.checkpoints import write_safetensors
    from samkit.loading import TEXT_ENCODER_KEY

    model = samkit.load("samkit_default")
    model.prompt_encoder.enable_text(384)
    path = tmp_path_factory.mktemp("text") / "text_head.safetensors"
    write_safetensors(model.state_dict(), path, metadata={TEXT_ENCODER_KEY: "minilm"})
    return path


def _sections(markdown: str) -> dict[str, list[list[str]]]:
    """Section title -> its table's rows (cells), header and rule left out."""
    out: dict[str, list[list[str]]] = {}
    for block in markdown.split("## ")[1:]:
        title, _, body = block.partition("\n")
        lines = [ln for ln in body.splitlines() if ln.startswith("|")]
        assert lines[0] == HEADER
        out[title] = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return out


def test_cli_text_end_to_end(tmp_path: Path, text_model: Path) -> None:
    seed, n, size = 2, 2, 32  # two tiny scenes with all five kinds of phrase between them
    r = samkit(
        "eval",
        "--text",
        "--model",
        str(text_model),
        "--synthetic",
        str(seed),
        "--n",
        str(n),
        "--size",
        str(size),
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    assert {p.name for p in tmp_path.iterdir()} == {
        "text_results.md",
        "text_results.csv",
        "text_miou.png",
    }
    assert (tmp_path / "text_results.md").read_text() == r.stdout
    assert Image.open(tmp_path / "text_miou.png").size == (640, 420)
    expected: dict[str, list[tuple[str, int]]] = {}
    for name in ("training vocabulary", "held-out synonyms"):
        kinds = [
            p.kind
            for i in range(n)
            for p in scene_prompts(seed, i, make_scene(seed, i, size))[name]
        ]
        order = ["all", "colour+shape", "colour", "shape", "group", "part"]
        expected[name] = [(k, len(kinds) if k == "all" else kinds.count(k)) for k in order]
    sections = _sections(r.stdout)
    assert list(sections) == list(expected)
    for name, rows in sections.items():
        assert [(row[0], int(row[1])) for row in rows] == expected[name]
        for row in rows:
            for cell in row[2:]:
                mean, half = (float(v) for v in cell.split(" ± "))
                assert 0 <= mean <= 1 and half >= 0
    with open(tmp_path / "text_results.csv") as f:
        lines = list(csv.DictReader(f))
    assert [(x["vocabulary"], x["kind"], int(x["n"])) for x in lines] == [
        (name, kind, count) for name, rows in expected.items() for kind, count in rows
    ]
    points = {x["vocabulary"]: (x["points@1"], x["points@3"]) for x in lines if x["kind"] == "all"}
    assert points["training vocabulary"] == points["held-out synonyms"]  # the same objects


def test_cli_text_needs_a_text_head(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = samkit("eval", "--text", "--model", "samkit_default", "--synthetic", "2", "--out", str(out))
    assert r.returncode == 1
    assert "no text head" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sa1b", "nowhere"], "synthetic scenes only"),
        (["--synthetic", "2", "--group-by", "kind"], "leave out --group-by"),
        (["--synthetic", "2", "--random-first", "0"], "--random-first"),
    ],
)
def test_cli_text_options(tmp_path: Path, extra: list[str], message: str) -> None:
    r = samkit("eval", "--text", "--model", str(tmp_path / "no-such-model.pt"), *extra)
    assert r.returncode == 1 and message in r.stderr  # refused before the model is looked for

"""backend="auto": the encoder runtime is measured once per model and machine, the fastest is
taken (torch unless another is clearly faster), and the decision is remembered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samkit import SamPredictor, load
from samkit.backend_choice import FILE, MARGIN, choose_backend, read_choices
from samkit.io import load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_fast_encoder_stays_in_torch_without_an_export(cache_home: Path) -> None:
    model = load("samkit_default", precision="fp32")
    said: list[str] = []
    # min_seconds far above the encoder's time: a test on a busy machine cannot flip it
    assert choose_backend(model, "fp32", announce=said.append, min_seconds=10) == "torch"
    assert len(said) == 1 and "measuring" in said[0]
    assert not (cache_home / "onnx").exists()  # a 128 px encoder is not worth a graph
    (record,) = read_choices(cache_home / FILE).values()
    assert record["backend"] == "torch" and list(record["seconds"]) == ["torch"]
    assert 0 < record["seconds"]["torch"] < 10
    # remembered: the second call measures nothing
    assert choose_backend(model, "fp32", announce=said.append) == "torch"
    assert len(said) == 1


def test_a_measured_choice_is_the_fastest_and_remembered(cache_home: Path) -> None:
    pytest.importorskip("openvino")
    model = load("samkit_default", precision="fp32")
    choice = choose_backend(model, "fp32", min_seconds=0)
    (record,) = read_choices(cache_home / FILE).values()
    seconds = record["seconds"]
    assert {"torch", "openvino"} <= set(seconds) and record["backend"] == choice
    fastest = min(seconds, key=seconds.get)
    assert choice == (fastest if seconds["torch"] >= MARGIN * seconds[fastest] else "torch")
    assert list((cache_home / "onnx").glob("*/encoder.onnx"))  # the runtimes ran the export
    # another precision is another decision; onnxruntime has no bf16 encoder
    choose_backend(model, "bf16", min_seconds=0)
    records = read_choices(cache_home / FILE)
    assert len(records) == 2
    bf16 = next(r for key, r in records.items() if "|bf16|" in key)
    assert "onnxruntime" not in bf16["seconds"]


def test_info_lists_the_measured_choices(
    cache_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samkit import cli

    assert cli.main(["info"]) == 0
    assert "backend auto measured 0 model(s)" in capsys.readouterr().out
    choose_backend(load("samkit_default", precision="fp32"), "fp32", min_seconds=10)
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    (key,) = read_choices(cache_home / FILE)
    assert "backend auto measured 1 model(s)" in out
    assert f"weights {key[:12]} fp32" in out and ": torch (torch " in out


def test_a_damaged_record_is_measured_again(cache_home: Path) -> None:
    cache_home.mkdir(parents=True)
    (cache_home / FILE).write_text("{not json")
    model = load("samkit_default", precision="fp32")
    assert choose_backend(model, "fp32", min_seconds=10) == "torch"
    assert len(json.loads((cache_home / FILE).read_text())) == 1


def test_auto_is_torch_for_int8_without_measuring(cache_home: Path) -> None:
    model = load("samkit_default", precision="int8")
    assert choose_backend(model, "int8", announce=pytest.fail) == "torch"
    assert not (cache_home / FILE).exists()


def test_predictor_and_cli_resolve_auto(tmp_path: Path, cache_home: Path) -> None:
    from PIL import Image

    from samkit import cli

    model = load("samkit_default", precision="fp32")
    auto, plain = SamPredictor(model, backend="auto"), SamPredictor(model)
    (record,) = read_choices(cache_home / FILE).values()
    assert auto.backend == record["backend"]  # resolved to what was measured
    image = load_image(EXAMPLE)
    for predictor in (auto, plain):
        predictor.set_image(image)
    want = plain.predict(np.array([[100, 90]]), np.array([1]))[0]
    got = auto.predict(np.array([[100, 90]]), np.array([1]))[0]
    assert want.any() and np.mean(got != want) < 1e-3  # any runtime: the same mask
    out = tmp_path / "mask.png"
    argv = ["segment", str(EXAMPLE), "--point", "100,90", "--out", str(out)]
    assert cli.main(argv) == 0  # --backend auto is the command line's default
    assert (np.asarray(Image.open(out)) > 0).any()
    with pytest.raises(SystemExit):
        cli.main([*argv, "--backend", "tensorrt"])

"""`samkit segment --text`: a phrase as the prompt, and the errors that come before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor, load
from samkit.checkpoints import write_safetensors
from samkit.cli import main
from samkit.io import load_image

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"  # 320 x 240
TEXT_HEAD = "prompt_encoder.text_projection."


def _weights(path: Path, *, text_head: bool) -> Path:
    """samkit_default's weights with a freshly enabled (seeded, untrained) minilm text head, or
    with no text head at all."""
    model = load("samkit_default")
    metadata = {"samkit_variant": "samkit_default"}
    if text_head:
        torch.manual_seed(0)
        model.prompt_encoder.enable_text(384)
        model.text_encoder = "minilm"
        metadata["samkit_text_encoder"] = "minilm"
    state = {k: v for k, v in model.state_dict().items() if text_head or TEXT_HEAD not in k}
    write_safetensors(state, path, metadata=metadata)
    return path


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _weights(tmp_path_factory.mktemp("text") / "text.safetensors", text_head=True)


@pytest.fixture(scope="module")
def library(text_model: Path) -> SamPredictor:
    """The library's predictor on the same model and image, for the masks the CLI must write
    (at the command line's default precision, auto)."""
    predictor = SamPredictor(load(text_model, precision="auto"))
    predictor.set_image(load_image(IMAGE))
    return predictor


def _segment(*args: str) -> int:
    return main(["segment", str(IMAGE), *args])


def _best_mask(predictor: SamPredictor, **prompt: object) -> np.ndarray:
    masks, scores, _ = predictor.predict(**prompt)  # type: ignore[arg-type]
    return masks[int(np.argmax(scores))]


@pytest.mark.parametrize(
    "prompt",
    [
        {},  # text alone
        {"point_coords": np.array([[100.0, 90.0]]), "point_labels": np.array([1])},
        {"box": np.array([170.0, 40.0, 290.0, 150.0])},
    ],
    ids=["text", "text+point", "text+box"],
)
def test_segment_text_writes_the_predictors_mask(
    text_model: Path,
    library: SamPredictor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    prompt: dict,
) -> None:
    out = tmp_path / "mask.png"
    args = ["--model", str(text_model), "--text", "red disc", "--out", str(out)]
    if "point_coords" in prompt:
        args += ["--point", "100,90"]
    if "box" in prompt:
        args += ["--box", "170,40,290,150"]
    assert _segment(*args) == 0, capsys.readouterr().err
    assert "mask 1 of 1" in capsys.readouterr().out  # single-mask output without --multimask
    mask = np.asarray(Image.open(out))
    assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 255}
    want = _best_mask(library, text="red disc", multimask_output=False, **prompt)
    np.testing.assert_array_equal(mask == 255, want)


def test_segment_text_multimask_keeps_the_best_of_three(
    text_model: Path, library: SamPredictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.png"
    args = ["--model", str(text_model), "--text", "blue square", "--multimask", "--out", str(out)]
    assert _segment(*args) == 0
    assert "of 3" in capsys.readouterr().out
    want = _best_mask(library, text="blue square", multimask_output=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out)) == 255, want)


@pytest.mark.parametrize("model", ["samkit_tiny", "headless"])
def test_text_on_a_model_without_text_head_fails_before_writing(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if model == "headless":
        model = str(_weights(tmp_path / "headless.safetensors", text_head=False))
    out = tmp_path / "mask.png"
    assert _segment("--model", model, "--text", "red disc", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "samkit: error:" in err and "no text head" in err and model in err
    assert not out.exists()


def test_text_error_leaves_an_existing_output_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.png"
    out.write_bytes(b"earlier result")
    assert _segment("--model", "samkit_tiny", "--text", "red disc", "--out", str(out)) == 1
    assert "no text head" in capsys.readouterr().err
    assert out.read_bytes() == b"earlier result"


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_fails(
    text_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    out = tmp_path / "mask.png"
    assert _segment("--model", str(text_model), "--text", text, "--out", str(out)) == 1
    assert "samkit: error: --text is empty" in capsys.readouterr().err
    assert not out.exists()


def test_text_over_the_encoders_limit_fails(
    text_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.png"
    phrase = " ".join(["red"] * 300)  # 300 words: over minilm's 256 tokens
    assert _segment("--model", str(text_model), "--text", phrase, "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "samkit: error: --text" in err and "at most 256" in err
    assert not out.exists()


def test_no_prompt_at_all_names_text_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _segment("--model", "samkit_tiny", "--out", str(tmp_path / "m.png")) == 1
    assert "--text PHRASE" in capsys.readouterr().err

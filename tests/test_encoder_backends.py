"""SamPredictor(backend=...): the image encoder on OpenVINO or onnxruntime, exported once to
samkit's cache, gives the torch encoder's answers; the prompts stay in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samkit import SamAutomaticMaskGenerator, SamPredictor, load
from samkit.embedding_cache import EmbeddingCache
from samkit.io import load_image

IMAGE = load_image(Path(__file__).resolve().parents[1] / "examples" / "shapes.png")
POINTS = [[100, 90], [230, 95], [40, 200], [160, 120]]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def answers(predictor: SamPredictor) -> list[tuple[np.ndarray, np.ndarray]]:
    predictor.set_image(IMAGE)
    return [predictor.predict(np.array([p]), np.array([1]))[:2] for p in POINTS]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_backend_fp32_gives_the_torch_encoders_answers(backend: str, cache_home: Path) -> None:
    pytest.importorskip(backend)
    model = load("samkit_default")
    torch_predictor, other = SamPredictor(model), SamPredictor(model, backend=backend)
    want, got = answers(torch_predictor), answers(other)
    assert other.backend == backend and other.precision == "fp32"
    np.testing.assert_allclose(
        other.features.numpy(), torch_predictor.features.numpy(), atol=1e-3, rtol=1e-3
    )
    for (gm, gs), (wm, ws) in zip(got, want, strict=True):
        assert np.mean(gm != wm) < 1e-3
        np.testing.assert_allclose(gs, ws, atol=1e-3)
    (exported,) = (cache_home / "onnx").glob("*/encoder.onnx")  # one export, in the cache
    stamp = exported.stat().st_mtime_ns
    SamPredictor(model, backend=backend).set_image(IMAGE)  # reused, not exported again
    assert exported.stat().st_mtime_ns == stamp
    assert not list((cache_home / "onnx").glob(".export-*"))  # no work folder left


def test_openvino_bf16_and_the_generator(cache_home: Path) -> None:
    pytest.importorskip("openvino")
    model = load("samkit_default")
    want = answers(SamPredictor(model))
    got = answers(SamPredictor(model, precision="bf16", backend="openvino"))
    ious = [
        iou(a, b)
        for (gm, _), (wm, _) in zip(got, want, strict=True)
        for a, b in zip(gm, wm, strict=True)
    ]
    gaps = [float(np.abs(gs - ws).max()) for (_, gs), (_, ws) in zip(got, want, strict=True)]
    assert np.mean(ious) >= 0.97 and max(gaps) <= 0.02, (ious, gaps)
    options = {"points_per_side": 6, "output_mode": "coco_rle"}
    ours = SamAutomaticMaskGenerator(model, backend="openvino", **options)
    assert ours.predictor.backend == "openvino"
    masks, reference = (
        ours.generate(IMAGE),
        SamAutomaticMaskGenerator(model, **options).generate(IMAGE),
    )
    assert len(masks) == len(reference)
    assert [m["segmentation"] for m in masks] == [m["segmentation"] for m in reference]


def test_the_cache_keeps_backends_apart(cache_home: Path) -> None:
    pytest.importorskip("openvino")
    model, cache = load("samkit_default"), EmbeddingCache(max_bytes=2**26)
    SamPredictor(model, cache=cache).set_image(IMAGE)
    SamPredictor(model, cache=cache, backend="openvino").set_image(IMAGE)
    assert len(cache) == 2  # one embedding each: the second was not served the first


def test_backend_choices_are_checked() -> None:
    model = load("samkit_default")
    with pytest.raises(ValueError, match="must be one of torch, onnxruntime, openvino, auto"):
        SamPredictor(model, backend="tensorrt")
    with pytest.raises(ValueError, match="onnxruntime has no bf16 encoder"):
        SamPredictor(model, precision="bf16", backend="onnxruntime")
    with pytest.raises(ValueError, match="Linear layers are int8"):
        SamPredictor(load("samkit_default", precision="int8"), backend="openvino")


def test_cli_backend_option(tmp_path: Path, cache_home: Path) -> None:
    pytest.importorskip("openvino")
    from PIL import Image

    from samkit import cli

    example = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
    argv = ["segment", str(example), "--point", "100,90", "--precision", "fp32"]
    for backend in ("torch", "openvino"):
        assert (
            cli.main([*argv, "--backend", backend, "--out", str(tmp_path / f"{backend}.png")]) == 0
        )
    torch_mask, ov_mask = (
        np.asarray(Image.open(tmp_path / f"{b}.png")) > 0 for b in ("torch", "openvino")
    )
    assert torch_mask.any() and np.mean(torch_mask != ov_mask) < 1e-3
    assert list((cache_home / "onnx").glob("*/encoder.onnx"))  # OpenVINO ran the export

    out = tmp_path / "amg"
    amg = ["amg", str(example), "--out", str(out), "--points-per-side", "4"]
    assert cli.main([*amg, "--precision", "fp32"]) == 0
    settings = out / ".samkit_settings.json"
    assert '"precision": "fp32"' in settings.read_text()
    # Another precision or backend resumes the folder: recorded for people, not compared.
    assert cli.main([*amg, "--precision", "bf16", "--backend", "openvino"]) == 0
    assert '"backend": "openvino"' in settings.read_text()

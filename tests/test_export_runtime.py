"""The onnxruntime predictor: same answers as SamPredictor, runs without torch, int8 graphs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from samkit import SamPredictor, load
from samkit.cli import main
from samkit.export import OnnxPredictor, export_decoder, export_encoder
from samkit.io import load_image

pytest.importorskip("onnxruntime")

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
# (point_coords, point_labels, box) on examples/shapes.png (320 x 240), as the README's demo
PROMPTS = [
    ([[100, 90]], [1], None),
    ([[100, 90], [217, 87]], [1, 0], None),
    (None, None, [170, 40, 290, 150]),
    ([[230, 95]], [0], [170, 40, 290, 150]),
]


def export_graphs(folder: Path) -> tuple[Path, Path]:
    """The bundled trained model as ONNX (encoder, decoder): real masks, not noise."""
    model = load("samkit_default")
    return export_encoder(model, folder / "encoder.onnx"), export_decoder(
        model, folder / "decoder.onnx"
    )


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_graphs(tmp_path_factory.mktemp("onnx"))


def _agree(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    masks, scores, low_res = got
    assert masks.dtype == want[0].dtype and masks.shape == want[0].shape
    if masks.dtype == bool:
        assert np.mean(masks != want[0]) < 1e-3  # pixels whose logit sits at the threshold
    else:
        np.testing.assert_allclose(masks, want[0], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(scores, want[1], atol=1e-4)
    np.testing.assert_allclose(low_res, want[2], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("multimask", [True, False])
def test_onnx_predictor_matches_sam_predictor(graphs: tuple[Path, Path], multimask: bool) -> None:
    onnx = OnnxPredictor(*graphs)
    torch_predictor = SamPredictor(load("samkit_default"))
    onnx.set_image(str(IMAGE))
    torch_predictor.set_image(load_image(IMAGE))
    assert onnx.original_size == torch_predictor.original_size == (240, 320)
    assert onnx.img_size == 128 and onnx.mask_threshold == 0.0  # from the graph's metadata
    for coords, labels, box in PROMPTS:
        kwargs = {
            "point_coords": None if coords is None else np.array(coords, dtype=float),
            "point_labels": None if labels is None else np.array(labels),
            "box": None if box is None else np.array(box, dtype=float),
            "multimask_output": multimask,
        }
        first = onnx.predict(**kwargs)
        _agree(first, torch_predictor.predict(**kwargs))
        best = first[2][int(np.argmax(first[1]))][None]  # feed the best low-res mask back
        _agree(
            onnx.predict(**kwargs, mask_input=best, return_logits=True),
            torch_predictor.predict(**kwargs, mask_input=best, return_logits=True),
        )


def test_onnx_predictor_errors(graphs: tuple[Path, Path], tmp_path: Path) -> None:
    onnx = OnnxPredictor(*graphs)
    with pytest.raises(RuntimeError, match="set_image"):
        onnx.predict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([1]))
    onnx.set_image(str(IMAGE))
    with pytest.raises(ValueError, match="finite"):
        onnx.predict(point_coords=np.array([[np.nan, 1.0]]), point_labels=np.array([1]))
    with pytest.raises(ValueError):
        onnx.predict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([1, 1]))
    with pytest.raises(ValueError, match="image_format"):
        onnx.set_image(str(IMAGE), image_format="RGBA")
    with pytest.raises(ValueError):
        onnx.set_image(tmp_path / "missing.png")

    import onnx as onnx_lib  # a graph from another exporter: no metadata

    bare = onnx_lib.load(str(graphs[1]))
    del bare.metadata_props[:]
    onnx_lib.save(bare, str(tmp_path / "bare.onnx"))
    encoder = onnx_lib.load(str(graphs[0]))
    del encoder.metadata_props[:]
    onnx_lib.save(encoder, str(tmp_path / "bare_encoder.onnx"))
    with pytest.raises(ValueError, match="img_size"):
        OnnxPredictor(tmp_path / "bare_encoder.onnx", tmp_path / "bare.onnx")
    assert OnnxPredictor(tmp_path / "bare_encoder.onnx", tmp_path / "bare.onnx", img_size=128)


_WITHOUT_TORCH = """
import json, sys
import numpy as np
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.modules["torchvision"] = None
from samkit.export.runtime import OnnxPredictor
encoder, decoder, image, out = sys.argv[1:]
p = OnnxPredictor(encoder, decoder)
p.set_image(image)
masks, scores, low_res = p.predict(point_coords=np.array([[100.0, 90.0]]),
                                   point_labels=np.array([1]))
np.savez(out, masks=masks, scores=scores, low_res=low_res)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m])))
"""


def test_onnx_predictor_runs_without_torch(graphs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, *map(str, graphs), str(IMAGE), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []  # no torch module was loaded
    got = np.load(out)
    predictor = SamPredictor(load("samkit_default"))
    predictor.set_image(load_image(IMAGE))
    want = predictor.predict(point_coords=np.array([[100.0, 90.0]]), point_labels=np.array([1]))
    _agree((got["masks"], got["scores"], got["low_res"]), want)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_int8_graphs_keep_the_interface_and_stay_close(tmp_path: Path) -> None:
    decoder, encoder = tmp_path / "decoder.onnx", tmp_path / "encoder.onnx"
    args = ["export-onnx", "--model", "samkit_default", "--out", str(decoder)]
    assert main([*args, "--encoder-out", str(encoder), "--int8"]) == 0
    int8 = (tmp_path / "encoder.int8.onnx", tmp_path / "decoder.int8.onnx")
    for small, full in zip(int8, (encoder, decoder), strict=True):
        assert small.stat().st_size < 0.5 * full.stat().st_size
    fp32_predictor, int8_predictor = OnnxPredictor(encoder, decoder), OnnxPredictor(*int8)
    assert int8_predictor.img_size == 128  # the metadata survives quantization
    ious = []
    for predictor in (fp32_predictor, int8_predictor):
        predictor.set_image(str(IMAGE))
    for coords, labels, box in PROMPTS:
        kwargs = {
            "point_coords": None if coords is None else np.array(coords, dtype=float),
            "point_labels": None if labels is None else np.array(labels),
            "box": None if box is None else np.array(box, dtype=float),
        }
        want, got = fp32_predictor.predict(**kwargs), int8_predictor.predict(**kwargs)
        ious += [_iou(g, w) for g, w in zip(got[0], want[0], strict=True)]
    assert np.mean(ious) > 0.9, ious

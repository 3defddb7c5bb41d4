"""OpenVINO as OnnxPredictor's runtime: the same graphs, the same answers as onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_export_runtime import IMAGE, PROMPTS, _agree, _iou, export_graphs

from samkit.export import OnnxPredictor, quantize_dynamic_int8

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_graphs(tmp_path_factory.mktemp("openvino"))


def prompts() -> list[dict[str, np.ndarray | None]]:
    return [
        {
            "point_coords": None if coords is None else np.array(coords, dtype=float),
            "point_labels": None if labels is None else np.array(labels),
            "box": None if box is None else np.array(box, dtype=float),
        }
        for coords, labels, box in PROMPTS
    ]


def test_openvino_fp32_gives_onnxruntimes_answers(graphs: tuple[Path, Path]) -> None:
    ov = OnnxPredictor(*graphs, runtime="openvino", precision="fp32", threads=1)
    ort = OnnxPredictor(*graphs)
    assert ov.img_size == 128 and ov.mask_threshold == 0.0  # metadata read through OpenVINO
    ov.set_image(str(IMAGE))
    ort.set_image(str(IMAGE))
    np.testing.assert_allclose(ov.features, ort.features, atol=1e-3, rtol=1e-3)
    for kwargs in prompts():
        first = ov.predict(**kwargs)
        _agree(first, ort.predict(**kwargs))
        best = first[2][int(np.argmax(first[1]))][None]
        _agree(
            ov.predict(**kwargs, mask_input=best, return_logits=True),
            ort.predict(**kwargs, mask_input=best, return_logits=True),
        )


def test_openvino_bf16_and_int8_stay_close(graphs: tuple[Path, Path], tmp_path: Path) -> None:
    int8 = [quantize_dynamic_int8(g, tmp_path / f"{g.stem}.int8.onnx") for g in graphs]
    fp32 = OnnxPredictor(*graphs, runtime="openvino", precision="fp32")
    others = [
        OnnxPredictor(*graphs, runtime="openvino", precision="bf16"),
        OnnxPredictor(*int8, runtime="openvino", precision="fp32"),
    ]
    for predictor in (fp32, *others):
        predictor.set_image(str(IMAGE))
    for other in others:
        ious, score_gaps = [], []
        for kwargs in prompts():
            want, got = fp32.predict(**kwargs), other.predict(**kwargs)
            ious += [_iou(g, w) for g, w in zip(got[0], want[0], strict=True)]
            score_gaps.append(float(np.abs(got[1] - want[1]).max()))
        assert np.mean(ious) >= 0.95, ious
        assert max(score_gaps) <= 0.05, score_gaps  # predicted IoUs
        assert not np.array_equal(other.features, fp32.features)  # it did run differently


def test_runtime_and_precision_are_checked(graphs: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="runtime must be one of onnxruntime, openvino"):
        OnnxPredictor(*graphs, runtime="tensorrt")
    with pytest.raises(ValueError, match="onnxruntime runs a graph in its own precision"):
        OnnxPredictor(*graphs, precision="bf16")
    with pytest.raises(ValueError, match="OpenVINO precision must be"):
        OnnxPredictor(*graphs, runtime="openvino", precision="int4")
    with pytest.raises(ValueError, match="providers are onnxruntime's"):
        OnnxPredictor(*graphs, runtime="openvino", providers=["CPUExecutionProvider"])


_SIGNAL_AFTER_FREEING = """
import gc, os, signal, sys
import numpy as np
from samkit.export import OnnxPredictor
p = OnnxPredictor(sys.argv[1], sys.argv[2], runtime="openvino", precision="bf16")
p.set_image(sys.argv[3])
p.predict(point_coords=np.array([[100.0, 90.0]]), point_labels=np.array([1]))
del p
gc.collect()
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
print(len(got))
"""


def test_a_signal_after_a_session_is_freed_is_handled(graphs: tuple[Path, Path]) -> None:
    """Freeing OpenVINO's compiled graphs in a process with torch left it to segfault on the
    next signal (Ctrl-C); the sessions keep them for the process's life."""
    import subprocess
    import sys

    args = [sys.executable, "-c", _SIGNAL_AFTER_FREEING, *map(str, graphs), str(IMAGE)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "1", (done.returncode, done.stderr)

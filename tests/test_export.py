"""ONNX export: the graphs run in onnxruntime and agree with samkit's PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SamPredictor, load
from samkit.cli import main
from samkit.export import SamOnnxModel, export_decoder, export_encoder
from samkit.export.onnx import DECODER_INPUTS, decoder_example_inputs

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model():
    return load("samkit_tiny").eval()


@pytest.fixture(scope="module")
def decoder_session(model, tmp_path_factory):
    path = export_decoder(model, tmp_path_factory.mktemp("onnx") / "decoder.onnx")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(session, inputs) -> list[np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    feeds = zip(names, inputs, strict=True)
    return session.run(None, {n: np.asarray(v, dtype=np.float32) for n, v in feeds})


def test_decoder_interface_is_the_official_one(decoder_session):
    assert [i.name for i in decoder_session.get_inputs()] == list(DECODER_INPUTS)
    assert [o.name for o in decoder_session.get_outputs()] == [
        "masks",
        "iou_predictions",
        "low_res_masks",
    ]


@pytest.mark.parametrize("num_points", [1, 2, 6])
@pytest.mark.parametrize("orig_size", [(256, 256), (300, 451), (640, 90)])
def test_decoder_matches_torch(model, decoder_session, num_points, orig_size):
    inputs = list(decoder_example_inputs(model, num_points))
    inputs[5] = torch.tensor(orig_size, dtype=torch.float32)
    expected = SamOnnxModel(model, return_single_mask=False)(*inputs)
    got = run(decoder_session, inputs)
    assert got[0].shape == (1, 4, *orig_size)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e.numpy(), atol=2e-4, rtol=1e-4)


def test_decoder_equals_predictor(model, decoder_session):
    """Points with the padding point, a box as labels 2/3, and a mask prompt: the ONNX graph
    returns what SamPredictor returns (single-mask token first, then the 3 multimask)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 451, 3), dtype=np.uint8)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    embedding = predictor.get_image_embedding()
    orig = np.array(image.shape[:2], dtype=np.float32)
    pts = np.array([[100.0, 120.0], [300.0, 40.0]])
    box = np.array([50.0, 60.0, 320.0, 250.0])
    low_res_prev = rng.normal(size=(1, 1, 64, 64)).astype(np.float32)
    cases = [
        (dict(point_coords=pts, point_labels=np.array([1, 0])), None),
        (dict(box=box), None),
        (dict(point_coords=pts[:1], point_labels=np.array([1]), box=box), None),
        (dict(point_coords=pts, point_labels=np.array([1, 1])), low_res_prev),
    ]
    for prompt, mask in cases:
        coords, labels = [], []
        if "point_coords" in prompt:
            coords.append(predictor.transform.apply_coords(prompt["point_coords"], image.shape[:2]))
            labels.append(prompt["point_labels"])
        if "box" in prompt:
            coords.append(
                predictor.transform.apply_boxes(prompt["box"], image.shape[:2]).reshape(2, 2)
            )
            labels.append(np.array([2, 3]))
        else:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([-1]))
        has_mask = np.array([0.0 if mask is None else 1.0])
        mask_in = np.zeros((1, 1, 64, 64)) if mask is None else mask
        onnx_inputs = [
            embedding,
            np.concatenate(coords)[None],
            np.concatenate(labels)[None],
            mask_in,
            has_mask,
            orig,
        ]
        masks, ious, low_res = run(decoder_session, onnx_inputs)
        for multimask, tokens in ((True, slice(1, None)), (False, slice(0, 1))):
            want_masks, want_ious, want_low = predictor.predict(
                **prompt,
                mask_input=None if mask is None else mask[0],
                multimask_output=multimask,
                return_logits=True,
            )
            np.testing.assert_allclose(masks[0, tokens], want_masks, atol=2e-4, rtol=1e-4)
            np.testing.assert_allclose(ious[0, tokens], want_ious, atol=1e-5)
            np.testing.assert_allclose(low_res[0, tokens], want_low, atol=1e-4)


@pytest.mark.parametrize("num_points", [1, 2, 3])
def test_decoder_options(model, tmp_path, num_points):
    path = export_decoder(
        model,
        tmp_path / "d.onnx",
        return_single_mask=True,
        return_extra_metrics=True,
        use_stability_score=True,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [
        "masks",
        "iou_predictions",
        "stability_scores",
        "areas",
        "low_res_masks",
    ]
    inputs = decoder_example_inputs(model, num_points)
    got = run(session, inputs)
    full = SamOnnxModel(model, return_single_mask=False, use_stability_score=True)(*inputs)
    # More than 2 points (padding included) -> the single-mask token; else the best multimask.
    best = 0 if num_points > 2 else 1 + int(full[1][0, 1:].argmax())
    assert got[0].shape[1] == 1
    np.testing.assert_allclose(got[0][0, 0], full[0][0, best].numpy(), atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(got[1][0, 0], full[1][0, best].numpy(), atol=1e-6)
    assert got[3][0, 0] == int((got[0][0, 0] > 0).sum())
    assert abs(got[3][0, 0] - int((full[0][0, best] > 0).sum())) <= 1e-4 * got[0][0, 0].size


def test_encoder_matches_torch(model, tmp_path):
    path = export_encoder(model, tmp_path / "encoder.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in ((256, 171), (99, 256)):
        image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h)) * 255
        want = model.image_encoder(model.preprocess(image))
        (got,) = session.run(None, {"input_image": image.numpy()})
        np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-4, rtol=1e-4)


def test_cli_export_onnx(tmp_path, capsys):
    out = tmp_path / "decoder.onnx"
    enc = tmp_path / "encoder.onnx"
    assert (
        main(
            [
                "export-onnx",
                "--model",
                "samkit_tiny",
                "--out",
                str(out),
                "--encoder-out",
                str(enc),
                "--return-single-mask",
            ]
        )
        == 0
    )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(DECODER_INPUTS)
    masks = run(session, decoder_example_inputs(load("samkit_tiny"), 2))[0]
    assert masks.shape == (1, 1, 1500, 2250)
    assert enc.is_file()
    assert str(out) in capsys.readouterr().out

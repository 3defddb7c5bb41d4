"""The ONNX decoder with a text input: the same masks as the torch predictor for the same text
vector, in onnxruntime directly and through OnnxPredictor; the default graph is unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samkit import SamPredictor, load
from samkit.checkpoints import write_safetensors
from samkit.cli import main
from samkit.export import OnnxPredictor, SamOnnxModel, export_decoder, export_encoder
from samkit.export.onnx import DECODER_INPUTS, decoder_example_inputs, text_example_input
from samkit.io import load_image
from samkit.modeling import Sam

ort = pytest.importorskip("onnxruntime")

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"  # 320 x 240
OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
POINTS = np.array([[100.0, 90.0], [217.0, 87.0]])
BOX = np.array([170.0, 40.0, 290.0, 150.0])


@pytest.fixture(scope="module")
def model() -> Sam:
    """samkit_default with a freshly enabled (seeded, untrained) minilm text head."""
    sam = load("samkit_default").eval()
    torch.manual_seed(0)
    sam.prompt_encoder.enable_text(384)
    sam.text_encoder = "minilm"
    return sam


@pytest.fixture(scope="module")
def graphs(model: Sam, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("onnx_text")
    return export_encoder(model, folder / "encoder.onnx"), export_decoder(
        model, folder / "decoder.onnx", text_input=True
    )


@pytest.fixture(scope="module")
def decoder(graphs: tuple[Path, Path]) -> ort.InferenceSession:
    return _session(graphs[1])


@pytest.fixture(scope="module")
def predictor(model: Sam) -> SamPredictor:
    p = SamPredictor(model)
    p.set_image(load_image(IMAGE))
    return p


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_text_graph_interface(decoder: ort.InferenceSession) -> None:
    inputs = {i.name: i.shape for i in decoder.get_inputs()}
    assert list(inputs) == [*DECODER_INPUTS, "text_embeddings"]
    assert inputs["text_embeddings"][1] == 384 and isinstance(inputs["text_embeddings"][0], str)
    assert [o.name for o in decoder.get_outputs()] == OUTPUTS
    assert decoder.get_modelmeta().custom_metadata_map["samkit_text_encoder"] == "minilm"


def test_default_export_is_unchanged(model: Sam, tmp_path: Path) -> None:
    """Without text_input a model with a text head exports the official interface, and the
    graph equals the model's SamOnnxModel."""
    session = _session(export_decoder(model, tmp_path / "plain.onnx"))
    assert [i.name for i in session.get_inputs()] == list(DECODER_INPUTS)
    assert [o.name for o in session.get_outputs()] == OUTPUTS
    assert "samkit_text_encoder" not in session.get_modelmeta().custom_metadata_map
    inputs = decoder_example_inputs(model, 2)
    want = SamOnnxModel(model, return_single_mask=False)(*inputs)
    got = session.run(None, {n: v.numpy() for n, v in zip(DECODER_INPUTS, inputs, strict=True)})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=2e-4, rtol=1e-4)


def _feeds(predictor: SamPredictor, prompt: dict, text: np.ndarray) -> dict[str, np.ndarray]:
    """The decoder inputs for `prompt` as PromptEncoder orders the tokens: points (with the
    padding point when there is no box), the box's corners, then the text token."""
    size = predictor.original_size
    assert size is not None
    coords, labels = [np.zeros((0, 2))], [np.zeros(0)]
    if "point_coords" in prompt:
        coords.append(predictor.transform.apply_coords(prompt["point_coords"], size))
        labels.append(prompt["point_labels"])
        if "box" not in prompt:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([-1]))
    if "box" in prompt:
        coords.append(predictor.transform.apply_boxes(prompt["box"], size).reshape(2, 2))
        labels.append(np.array([2, 3]))
    mask = prompt.get("mask_input")
    mask_size = predictor.model.prompt_encoder.mask_input_size
    return {
        "image_embeddings": predictor.get_image_embedding().numpy(),
        "point_coords": np.concatenate(coords)[None].astype(np.float32),
        "point_labels": np.concatenate(labels)[None].astype(np.float32),
        "mask_input": (np.zeros((1, *mask_size)) if mask is None else mask)[None].astype(
            np.float32
        ),
        "has_mask_input": np.array([float(mask is not None)], dtype=np.float32),
        "orig_im_size": np.array(size, dtype=np.float32),
        "text_embeddings": text.astype(np.float32),
    }


PROMPTS = {
    "text": {},
    "text+points": {"point_coords": POINTS, "point_labels": np.array([1, 0])},
    "text+box": {"box": BOX},
    "text+point+box": {"point_coords": POINTS[:1], "point_labels": np.array([1]), "box": BOX},
    "text+points+mask": {"point_coords": POINTS, "point_labels": np.array([1, 1])},
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_text_graph_equals_the_torch_predictor(
    decoder: ort.InferenceSession, predictor: SamPredictor, name: str
) -> None:
    prompt = dict(PROMPTS[name])
    if name.endswith("+mask"):  # the previous prediction's best low-res mask, fed back
        _, scores, low_res = predictor.predict(**prompt, text="the red disc")
        prompt["mask_input"] = low_res[int(np.argmax(scores))][None]
    text = predictor.encode_text(["the red disc"]).numpy()  # (1, 384)
    masks, ious, low_res = decoder.run(OUTPUTS, _feeds(predictor, prompt, text))
    assert masks.shape == (1, 4, 240, 320)
    for multimask, tokens in ((True, slice(1, None)), (False, slice(0, 1))):
        want_masks, want_ious, want_low = predictor.predict(
            **prompt, multimask_output=multimask, return_logits=True, text="the red disc"
        )
        np.testing.assert_allclose(masks[0, tokens], want_masks, atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(ious[0, tokens], want_ious, atol=1e-5)
        np.testing.assert_allclose(low_res[0, tokens], want_low, atol=1e-4)


def test_text_changes_the_masks(decoder: ort.InferenceSession, predictor: SamPredictor) -> None:
    """The text token is used: another phrase, or none (a (0, D) input), gives other logits;
    with none the graph equals the predictor without text."""
    prompt = PROMPTS["text+points"]
    texts = predictor.encode_text(["the red disc", "the blue square"]).numpy()
    red, blue = (decoder.run(OUTPUTS, _feeds(predictor, prompt, t[None]))[2] for t in texts)
    _, _, none = decoder.run(OUTPUTS, _feeds(predictor, prompt, np.zeros((0, 384))))
    assert np.abs(red - blue).max() > 1e-2 and np.abs(red - none).max() > 1e-2
    want = predictor.predict(**prompt, multimask_output=True)[2]
    np.testing.assert_allclose(none[0, 1:], want, atol=1e-4)


def test_onnx_predictor_takes_text_vectors(
    graphs: tuple[Path, Path], predictor: SamPredictor
) -> None:
    onnx = OnnxPredictor(*graphs)
    assert onnx.text_dim == 384 and onnx.text_encoder == "minilm"
    onnx.set_image(str(IMAGE))
    vector = predictor.encode_text(["the red disc"])[0].numpy()  # (384,)
    for name in ("text", "text+points", "text+box"):
        got = onnx.predict(**PROMPTS[name], multimask_output=False, text_embedding=vector)
        want = predictor.predict(**PROMPTS[name], multimask_output=False, text="the red disc")
        assert np.mean(got[0] != want[0]) < 1e-3  # pixels whose logit sits at the threshold
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
        np.testing.assert_allclose(got[2], want[2], atol=1e-3, rtol=1e-3)
    # the same text graph without text: the predictor's masks without text
    got = onnx.predict(**PROMPTS["text+points"], return_logits=True)
    want = predictor.predict(**PROMPTS["text+points"], return_logits=True)
    np.testing.assert_allclose(got[2], want[2], atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match=r"\(384,\)"):
        onnx.predict(text_embedding=np.zeros((2, 384)))


def test_onnx_predictor_without_text_input_refuses_text(
    graphs: tuple[Path, Path], model: Sam, tmp_path: Path
) -> None:
    onnx = OnnxPredictor(graphs[0], export_decoder(model, tmp_path / "plain.onnx"))
    assert onnx.text_dim is None
    onnx.set_image(str(IMAGE))
    with pytest.raises(ValueError, match="export-onnx --text"):
        onnx.predict(text_embedding=np.zeros(384))


def test_single_mask_graph_counts_the_text_token(model: Sam, tmp_path: Path) -> None:
    """return_single_mask: one point, its padding and the text are 3 tokens -> token 0."""
    session = _session(
        export_decoder(model, tmp_path / "d.onnx", text_input=True, return_single_mask=True)
    )
    inputs = decoder_example_inputs(model, 2)
    text = text_example_input(model)
    full = SamOnnxModel(model, return_single_mask=False, text_input=True)
    with pytest.raises(ValueError, match="forward_with_text"):
        full(*inputs)  # the official forward would silently drop the text
    want_masks, want_ious, _ = full.forward_with_text(*inputs, text)
    feeds = {n: v.numpy() for n, v in zip(DECODER_INPUTS, inputs, strict=True)}
    masks, ious, _ = session.run(OUTPUTS, {**feeds, "text_embeddings": text.numpy()})
    assert masks.shape[1] == 1
    np.testing.assert_allclose(masks[0, 0], want_masks[0, 0].numpy(), atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(ious[0, 0], want_ious[0, 0].numpy(), atol=1e-5)


def test_text_input_needs_a_text_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = load("samkit_tiny")
    with pytest.raises(ValueError, match="text head"):
        SamOnnxModel(tiny, return_single_mask=False, text_input=True)
    with pytest.raises(ValueError, match="text_input=True"):
        SamOnnxModel(tiny, return_single_mask=False).forward_with_text(
            *decoder_example_inputs(tiny), torch.zeros(1, 384)
        )
    out = tmp_path / "decoder.onnx"
    assert main(["export-onnx", "--model", "samkit_tiny", "--text", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "samkit: error: --text: samkit_tiny has no text token" in err
    assert "grounder" not in err
    assert main(["export-onnx", "--model", "samkit_text", "--text", "--out", str(out)]) == 1
    assert "text grounder picks among the decoder's masks" in capsys.readouterr().err
    assert not out.exists()


def test_cli_export_text(model: Sam, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "text.safetensors"
    metadata = {"samkit_variant": "samkit_default", "samkit_text_encoder": "minilm"}
    write_safetensors(model.state_dict(), weights, metadata=metadata)
    out = tmp_path / "decoder.onnx"
    assert main(["export-onnx", "--model", str(weights), "--text", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    session = _session(out)
    assert [i.name for i in session.get_inputs()][-1] == "text_embeddings"
    assert session.get_modelmeta().custom_metadata_map["samkit_text_encoder"] == "minilm"

"""Code written for Meta's `segment_anything` runs with the word replaced by `samkit`.

Each test follows what a user's script does: Meta's scripts/amg.py and
scripts/export_onnx_model.py, its ONNX notebook, and fine-tuning code that hooks or replaces
the decoder's submodules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.automatic_mask_generator import SamAutomaticMaskGenerator
from samkit.build_sam import sam_model_registry
from samkit.modeling import Sam
from samkit.predictor import SamPredictor
from samkit.utils.amg import (
    MaskData,
    coco_encode_rle,
    generate_crop_boxes,
    mask_to_rle_pytorch,
    rle_to_mask,
)
from samkit.utils.onnx import SamOnnxModel
from samkit.utils.transforms import ResizeLongestSide


@pytest.fixture
def checkpoint(tiny_sam: Sam, tmp_path: Path) -> Path:
    """A .pth state dict, as Meta's checkpoints are."""
    path = tmp_path / "sam_tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


def _decoder_inputs(sam: Sam, prompts: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sparse, dense = sam.prompt_encoder(
        points=(torch.rand(prompts, 2, 2, generator=g) * sam.img_size, torch.ones(prompts, 2)),
        boxes=None,
        masks=None,
    )
    c, (h, w) = sam.prompt_encoder.embed_dim, sam.prompt_encoder.image_embedding_size
    return {
        "image_embeddings": torch.randn(1, c, h, w, generator=g),
        "image_pe": sam.prompt_encoder.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
    }


def test_decoder_forward_runs_its_submodules_so_hooks_fire(tiny_sam: Sam) -> None:
    seen: list[str] = []
    decoder = tiny_sam.mask_decoder
    handles = [
        decoder.output_upscaling.register_forward_hook(lambda *_: seen.append("upscaling")),
        decoder.transformer.register_forward_hook(lambda *_: seen.append("transformer")),
        decoder.iou_prediction_head.register_forward_hook(lambda *_: seen.append("iou")),
    ]
    try:
        with torch.no_grad():
            decoder(**_decoder_inputs(tiny_sam), multimask_output=True)
    finally:
        for h in handles:
            h.remove()
    assert seen == ["transformer", "upscaling", "iou"]


def test_a_replaced_output_upscaling_takes_effect(tiny_sam: Sam) -> None:
    """HQ-SAM-style code swaps decoder submodules; forward must use the new one."""
    sam = sam_model_registry["samkit_tiny"]()
    sam.load_state_dict(tiny_sam.state_dict())
    inputs = _decoder_inputs(sam)
    with torch.no_grad():
        before, _ = sam.mask_decoder(**inputs, multimask_output=False)
        original = sam.mask_decoder.output_upscaling
        sam.mask_decoder.output_upscaling = torch.nn.Sequential(original, torch.nn.Tanh())
        after, _ = sam.mask_decoder(**inputs, multimask_output=False)
    assert before.shape == after.shape
    assert not torch.allclose(before, after)
    # the upscaled features now lie in (-1, 1): the masks are bounded by the hypernetwork norms
    assert after.abs().max() < before.abs().max()


def test_amg_script_flow_writes_coco_rle_json(checkpoint: Path, image: np.ndarray) -> None:
    """scripts/amg.py: registry with a checkpoint path, .to(device), output_mode, json.dump."""
    sam = sam_model_registry["samkit_tiny"](checkpoint=str(checkpoint))
    _ = sam.to(device="cpu")
    generator = SamAutomaticMaskGenerator(
        sam, output_mode="coco_rle", points_per_side=8, pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )  # fmt: skip
    masks = generator.generate(image)
    assert masks, "the seeded model keeps masks with both filters off"
    text = json.dumps(masks)  # the script dumps the records as they are
    record = json.loads(text)[0]
    assert set(record) == {
        "segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
        "crop_box",
    }  # fmt: skip
    assert isinstance(record["segmentation"]["counts"], str)


def test_export_script_flow_with_torch_onnx_export(tiny_sam: Sam, tmp_path: Path) -> None:
    """scripts/export_onnx_model.py: SamOnnxModel by keyword, tanh GELU, torch.onnx.export with
    dynamic point axes, then onnxruntime. dynamo=False: torch >= 2.9 defaults to the dynamo
    exporter, which takes neither Meta's SamOnnxModel nor this one (the output size depends on
    orig_im_size's values)."""
    ort = pytest.importorskip("onnxruntime")
    onnx_model = SamOnnxModel(
        model=tiny_sam, return_single_mask=True, use_stability_score=False,
        return_extra_metrics=False,
    )  # fmt: skip
    for m in onnx_model.modules():
        if isinstance(m, torch.nn.GELU):
            m.approximate = "tanh"
    embed_size = tiny_sam.prompt_encoder.image_embedding_size
    dummy = {
        "image_embeddings": torch.randn(1, tiny_sam.prompt_encoder.embed_dim, *embed_size),
        "point_coords": torch.randint(0, 256, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, *[4 * x for x in embed_size]),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    expected = onnx_model(**dummy)
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(
        onnx_model, tuple(dummy.values()), str(path), export_params=True, verbose=False,
        opset_version=17, do_constant_folding=True, input_names=list(dummy),
        output_names=["masks", "iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        dynamo=False,
    )  # fmt: skip
    session = ort.InferenceSession(str(path))
    masks, scores, low_res = session.run(None, {k: v.numpy() for k, v in dummy.items()})
    assert masks.shape == (1, 1, 1500, 2250)
    np.testing.assert_allclose(scores, expected[1].numpy(), atol=1e-4)
    np.testing.assert_allclose(low_res, expected[2].numpy(), atol=1e-3)
    # num_points is dynamic: 2 points run through the same graph
    two = {k: v.numpy() for k, v in dummy.items()}
    two["point_coords"], two["point_labels"] = (
        two["point_coords"][:, :2],
        two["point_labels"][:, :2],
    )
    assert session.run(None, two)[0].shape == (1, 1, 1500, 2250)


def test_onnx_notebook_flow_matches_the_predictor(tiny_sam: Sam, image: np.ndarray) -> None:
    """notebooks/onnx_model_example.ipynb: the predictor's embedding, ResizeLongestSide on the
    points plus a padding point, no mask input: the ONNX model gives the predictor's masks."""
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    embedding = predictor.get_image_embedding()
    point = np.array([[70, 60]])
    coords = np.concatenate([point, np.array([[0.0, 0.0]])])[None, :, :]
    labels = np.concatenate([np.array([1]), np.array([-1])])[None, :].astype(np.float32)
    coords = predictor.transform.apply_coords(coords, image.shape[:2]).astype(np.float32)
    onnx_model = SamOnnxModel(tiny_sam, return_single_mask=False)
    with torch.no_grad():
        masks, scores, _ = onnx_model(
            embedding,
            torch.as_tensor(coords),
            torch.as_tensor(labels),
            torch.zeros(1, 1, 64, 64),
            torch.zeros(1),
            torch.tensor(image.shape[:2], dtype=torch.float32),
        )
    expected, expected_scores, _ = predictor.predict(point, np.array([1]), multimask_output=True)
    np.testing.assert_allclose(scores[0, 1:].numpy(), expected_scores, atol=1e-5)
    agree = ((masks[0, 1:] > tiny_sam.mask_threshold).numpy() == expected).mean()
    assert agree > 0.999


def test_resize_longest_side_from_utils_is_the_predictors(tiny_sam: Sam) -> None:
    transform = ResizeLongestSide(1024)
    assert isinstance(SamPredictor(tiny_sam).transform, ResizeLongestSide)
    assert transform.get_preprocess_shape(1500, 2250, 1024) == (683, 1024)
    # coordinates scale by the rounded size, as the official transform does: 1500 -> 683
    coords = transform.apply_coords(np.array([[2250.0, 1500.0]]), (1500, 2250))
    assert coords.tolist() == [[1024.0, 683.0]]


def test_mask_data_filters_and_joins_every_column_type() -> None:
    data = MaskData(
        rles=[{"a": 1}, {"a": 2}, {"a": 3}],
        boxes=torch.tensor([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]),
        scores=np.array([0.1, 0.2, 0.3]),
    )
    data.filter(torch.tensor([True, False, True]))
    assert [r["a"] for r in data["rles"]] == [1, 3]
    assert data["scores"].tolist() == [0.1, 0.3]
    data.filter(torch.tensor([1, 0]))  # indices, in their order
    assert [r["a"] for r in data["rles"]] == [3, 1]
    more = MaskData(rles=[{"a": 4}], boxes=torch.tensor([[5, 5, 6, 6]]), scores=np.array([0.4]))
    data.cat(more)
    more["rles"][0]["a"] = 99  # cat copies: the joined rows do not change with the source
    assert [r["a"] for r in data["rles"]] == [3, 1, 4]
    assert data["boxes"].shape == (3, 4)
    data.to_numpy()
    assert isinstance(data["boxes"], np.ndarray)
    assert sorted(k for k, _ in data.items()) == ["boxes", "rles", "scores"]
    with pytest.raises(TypeError, match="must be a list, numpy array or torch tensor"):
        data["bad"] = 3
    with pytest.raises(TypeError, match="cannot append ndarray to list"):
        data.cat(MaskData(rles=np.zeros(2)))


def test_rle_helpers_under_their_official_names_round_trip() -> None:
    masks = torch.zeros(2, 6, 5, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[1, 0, 0] = True
    rles = mask_to_rle_pytorch(masks)
    for rle, mask in zip(rles, masks, strict=True):
        assert np.array_equal(rle_to_mask(rle), mask.numpy())
    pycocotools = pytest.importorskip("pycocotools.mask")
    coco = coco_encode_rle(rles[0])
    assert np.array_equal(pycocotools.decode(dict(coco, counts=coco["counts"].encode())),
                          masks[0].numpy())  # fmt: skip


def test_predictor_and_amg_notebook_flows(tiny_sam: Sam, image: np.ndarray) -> None:
    """notebooks/predictor_example.ipynb and automatic_mask_generator_example.ipynb: a click,
    its best low-res logits fed back with a second click, a batch of boxes through
    predict_torch with transform.apply_boxes_torch, and the generator built by keyword."""
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(
        point_coords=np.array([[70, 60]]), point_labels=np.array([1]), multimask_output=True
    )
    assert masks.shape == (3, *image.shape[:2]) and scores.shape == (3,)
    mask_input = logits[np.argmax(scores), :, :]
    masks, _, _ = predictor.predict(
        point_coords=np.array([[70, 60], [20, 20]]),
        point_labels=np.array([1, 0]),
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    assert masks.shape == (1, *image.shape[:2])
    input_boxes = torch.tensor([[10, 10, 80, 70], [40, 30, 150, 110]], device=predictor.device)
    transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
    masks_t, _, _ = predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=transformed_boxes, multimask_output=False
    )
    assert masks_t.shape == (2, 1, *image.shape[:2]) and masks_t.dtype == torch.bool
    generator = SamAutomaticMaskGenerator(
        model=tiny_sam, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=100,
    )  # fmt: skip
    records = generator.generate(image)
    assert records and all(r["segmentation"].shape == image.shape[:2] for r in records)
    crops, _ = generate_crop_boxes(image.shape[:2], 1, 512 / 1500)
    assert len(crops) == 5  # the whole image and four zoomed crops
    xywh = {(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in crops}
    assert {tuple(r["crop_box"]) for r in records} <= xywh


def test_build_sam_is_the_function_even_after_its_submodule_is_imported() -> None:
    """As in Meta's package, `samkit.build_sam` is the builder, whatever was imported first."""
    import importlib
    import subprocess
    import sys

    import samkit

    module = importlib.import_module("samkit.build_sam")
    assert callable(samkit.build_sam) and samkit.build_sam is module.build_sam
    code = (
        "import samkit.build_sam, samkit; from samkit.build_sam import sam_model_registry; "
        "from samkit import build_sam; assert build_sam is samkit.build.build_sam_vit_h; "
        "assert 'vit_b' in sam_model_registry"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

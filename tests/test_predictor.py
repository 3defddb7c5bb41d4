"""SamPredictor: the official API's shapes, dtypes and behaviour, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor
from samkit.modeling import Sam

POINT = np.array([[80.0, 60.0]])


def test_predict_shapes_and_dtypes(predictor: SamPredictor) -> None:
    masks, scores, low_res = predictor.predict(point_coords=POINT, point_labels=np.array([1]))
    assert masks.shape == (3, 120, 160) and masks.dtype == np.bool_
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert low_res.shape == (3, 64, 64) and low_res.dtype == np.float32
    masks, scores, low_res = predictor.predict(
        point_coords=POINT, point_labels=np.array([1]), multimask_output=False
    )
    assert masks.shape == (1, 120, 160) and scores.shape == (1,) and low_res.shape == (1, 64, 64)


def test_return_logits_thresholds_to_masks(predictor: SamPredictor) -> None:
    logits, _, _ = predictor.predict(
        point_coords=POINT, point_labels=np.array([1]), return_logits=True
    )
    masks, _, _ = predictor.predict(point_coords=POINT, point_labels=np.array([1]))
    assert logits.dtype == np.float32
    assert np.array_equal(logits > 0, masks)


def test_mask_input_changes_prediction(predictor: SamPredictor) -> None:
    _, scores, low_res = predictor.predict(point_coords=POINT, point_labels=np.array([1]))
    best = low_res[np.argmax(scores)][None]
    _, _, l1 = predictor.predict(
        point_coords=POINT, point_labels=np.array([1]), multimask_output=False
    )
    _, _, l2 = predictor.predict(
        point_coords=POINT, point_labels=np.array([1]), mask_input=best, multimask_output=False
    )
    assert not np.allclose(l1, l2)


def test_bgr_equals_rgb_reversed(tiny_sam: Sam, image: np.ndarray) -> None:
    rgb, bgr = SamPredictor(tiny_sam), SamPredictor(tiny_sam)
    rgb.set_image(image)
    bgr.set_image(image[..., ::-1].copy(), image_format="BGR")
    assert torch.equal(rgb.get_image_embedding(), bgr.get_image_embedding())


def test_set_image_accepts_pil_and_paths(tiny_sam: Sam, image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    ref = SamPredictor(tiny_sam)
    ref.set_image(image)
    for source in (Image.fromarray(image), path, str(path)):
        p = SamPredictor(tiny_sam)
        p.set_image(source)
        assert torch.equal(p.get_image_embedding(), ref.get_image_embedding())


def test_state_and_reset(tiny_sam: Sam, image: np.ndarray) -> None:
    p = SamPredictor(tiny_sam)
    assert not p.is_image_set and p.features is None
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(point_coords=POINT, point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        p.get_image_embedding()
    p.set_image(image)
    assert p.is_image_set
    assert p.original_size == (120, 160) and p.input_size == (192, 256)
    assert p.get_image_embedding().shape == (1, 64, 16, 16)
    assert p.device == torch.device("cpu")
    p.reset_image()
    assert not p.is_image_set and p.original_size is None


def test_predict_torch_batched_equals_one_by_one(predictor: SamPredictor) -> None:
    boxes = np.array([[10.0, 10, 100, 90], [50, 20, 150, 110], [0, 0, 160, 120]])
    t = predictor.transform
    size = predictor.original_size
    assert size is not None
    batched = predictor.predict_torch(None, None, t.apply_boxes_torch(torch.tensor(boxes), size))
    assert batched[0].shape == (3, 3, 120, 160)
    for i, box in enumerate(boxes):
        masks, scores, low_res = predictor.predict(box=box)
        assert np.array_equal(masks, batched[0][i].numpy())
        np.testing.assert_allclose(scores, batched[1][i].numpy(), atol=1e-5)
        np.testing.assert_allclose(low_res, batched[2][i].numpy(), atol=1e-4)


def test_set_torch_image_rejects_unresized(tiny_sam: Sam) -> None:
    p = SamPredictor(tiny_sam)
    with pytest.raises(ValueError, match="longest side is 256"):
        p.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    with pytest.raises(ValueError, match=r"\(1, 3, h, w\)"):
        p.set_torch_image(torch.zeros(3, 256, 256), (256, 256))


def test_bad_image_format(tiny_sam: Sam, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image_format"):
        SamPredictor(tiny_sam).set_image(image, image_format="HSV")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"point_coords": np.array([80.0, 60.0]), "point_labels": np.array([1])}, "Nx2"),
        ({"point_coords": POINT, "point_labels": np.array([1, 0])}, r"shape \(1,\)"),
        ({"point_coords": POINT}, "together"),
        ({"point_coords": np.array([[np.nan, 3.0]]), "point_labels": np.array([1])}, "NaN"),
        ({"point_coords": np.array([[np.inf, 3.0]]), "point_labels": np.array([1])}, "NaN"),
        ({"point_coords": POINT, "point_labels": np.array([2])}, "point_labels must be 1"),
        ({"point_coords": np.array([[500.0, 3.0]]), "point_labels": np.array([1])}, "inside"),
        ({"point_coords": np.array([[-1.0, 3.0]]), "point_labels": np.array([1])}, "inside"),
        ({"point_coords": [["a", "b"]], "point_labels": [1]}, "numeric"),
        ({"box": np.array([1.0, 2.0, 3.0])}, "XYXY box of shape"),
        ({"box": np.array([50.0, 50.0, 10.0, 10.0])}, "x0 <= x1"),
        ({"box": np.array([0.0, 0.0, 10.0, 999.0])}, "inside"),
        (
            {"box": np.array([0.0, 0.0, 10.0, 10.0]), "mask_input": np.zeros((1, 256, 256))},
            "1x64x64",
        ),
        (
            {"box": np.array([0.0, 0.0, 10.0, 10.0]), "mask_input": np.full((1, 64, 64), np.nan)},
            "NaN",
        ),
    ],
)
def test_bad_prompts_raise_clear_errors(predictor: SamPredictor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)


def test_predict_torch_bad_shapes(predictor: SamPredictor) -> None:
    with pytest.raises(ValueError, match="BxNx2"):
        predictor.predict_torch(torch.zeros(2, 2), torch.zeros(2, dtype=torch.int))
    with pytest.raises(ValueError, match="batch sizes differ"):
        predictor.predict_torch(torch.zeros(2, 1, 2), torch.ones(2, 1), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_torch(None, None, torch.full((1, 4), float("nan")))


def test_points_on_image_edges_are_accepted(predictor: SamPredictor) -> None:
    corners = np.array([[0.0, 0.0], [160.0, 120.0]])
    masks, _, _ = predictor.predict(point_coords=corners, point_labels=np.array([1, 0]))
    assert masks.shape == (3, 120, 160)


def test_set_images_equals_set_image(tiny_sam: Sam, image: np.ndarray) -> None:
    """Batched embedding (mixed sizes, batches of 2) gives each image's own predictions."""
    images = [image, image[:50, :90].copy(), np.ascontiguousarray(image[::-1])]
    batched = SamPredictor(tiny_sam)
    embeddings = batched.set_images(images, batch_size=2)
    assert len(embeddings) == 3
    single = SamPredictor(tiny_sam)
    point = np.array([[20.0, 30.0]])
    for img, embedding in zip(images, embeddings, strict=True):
        single.set_image(img)
        batched.set_embedding(embedding)
        assert batched.original_size == img.shape[:2]
        torch.testing.assert_close(
            batched.get_image_embedding(), single.get_image_embedding(), atol=1e-4, rtol=1e-4
        )
        want = single.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)
        got = batched.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        batched.set_images(images, batch_size=0)


def test_prepared_decoder_equals_plain_decoder(predictor: SamPredictor) -> None:
    """Reusing the per-image first-block work changes nothing (batch of prompts)."""
    model = predictor.model
    coords = torch.tensor([[[10.0, 20.0]], [[100.0, 60.0]], [[200.0, 200.0]]])
    labels = torch.ones(3, 1, dtype=torch.int)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    kwargs = dict(
        image_embeddings=predictor.get_image_embedding(),
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    with torch.no_grad():
        plain = model.mask_decoder(**kwargs)
        fast = model.mask_decoder.predict_prepared(
            image_pe=kwargs["image_pe"],
            sparse_prompt_embeddings=sparse,
            prepared=predictor.prepared,
            multimask_output=True,
        )
    for f, p in zip(fast, plain, strict=True):
        torch.testing.assert_close(f, p, atol=1e-5, rtol=1e-5)


def test_every_mask_is_the_single_then_the_multimask_outputs_of_one_pass(
    predictor: SamPredictor,
) -> None:
    coords = torch.tensor([[[10.0, 20.0]], [[100.0, 60.0]]])
    labels = torch.ones(2, 1, dtype=torch.int)
    low_res = predictor.decode_low_res(coords, labels, None, None, True)[0]
    mask_input = low_res[:, :1]  # the prepared path, then the mask prompt's plain decoder
    for mask in (None, mask_input):
        every = predictor.decode_low_res(coords, labels, None, mask, False, every_mask=True)
        single = predictor.decode_low_res(coords, labels, None, mask, False)
        multi = predictor.decode_low_res(coords, labels, None, mask, True)
        assert every[0].shape[:2] == every[1].shape == (2, 4)
        for got, one, three in zip(every, single, multi, strict=True):
            torch.testing.assert_close(got, torch.cat([one, three], 1), atol=1e-5, rtol=1e-5)


def test_bf16_masks_agree_with_fp32(tiny_sam: Sam, image: np.ndarray) -> None:
    masks = {}
    for precision in ("fp32", "bf16"):
        predictor = SamPredictor(tiny_sam, precision=precision)
        predictor.set_image(image)
        assert predictor.get_image_embedding().dtype == torch.float32
        masks[precision], scores, low_res = predictor.predict(
            point_coords=np.array([[40.0, 50.0]]), point_labels=np.array([1])
        )
        assert scores.dtype == np.float32 and low_res.dtype == np.float32
    inter = (masks["fp32"] & masks["bf16"]).sum((1, 2))
    union = (masks["fp32"] | masks["bf16"]).sum((1, 2))
    assert (inter / np.maximum(union, 1)).mean() >= 0.9
    with pytest.raises(ValueError, match="precision"):
        SamPredictor(tiny_sam, precision="fp16")

"""Precision as a property of the loaded model: `samkit.load(..., precision=)`, the predictor
and generator following it, int8 Linear layers (`samkit.quantize`), and --precision on the
command line. Each precision is forced here whatever the CPU (bf16 autocast runs without
native bf16, only slower) and compared with fp32 on scikit-image's photos (the benchmarks'),
with the bundled samkit_default."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn

from samkit import SamAutomaticMaskGenerator, SamPredictor, cli, devices, load
from samkit.embedding_cache import EmbeddingCache
from samkit.modeling import Sam
from samkit.quantize import Int8Linear, int8_available, weight_levels
from samkit.scale.pipeline import EngineConfig, ImageWorker

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
PHOTOS = ("astronaut", "chelsea", "coffee")
MODES = ("bf16", "int8")
# AMG on a small photo with the thresholds bench_speed uses for samkit_default (its predicted
# IoUs are lower than a ViT-H's): a few dozen masks.
AMG_OPTIONS: dict[str, Any] = {
    "points_per_side": 6,
    "pred_iou_thresh": 0.25,
    "stability_score_thresh": 0.6,
    "stability_score_offset": 0.25,
}


def photo(name: str, size: int = 256) -> np.ndarray:
    """scikit-image's photo `name`, resized so that its longest side is `size`."""
    image = Image.fromarray(getattr(data, name)())
    scale = size / max(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale))))


def spread_points(image: np.ndarray, n: int = 4) -> np.ndarray:
    """n fixed (X, Y) points spread over the image (the benchmarks' prompt_points)."""
    h, w = image.shape[:2]
    t = (np.arange(n) + 0.5) / n
    return np.stack([t * w, ((t * 7) % 1.0) * h], axis=1)


def point_outputs(model: Sam) -> list[tuple[np.ndarray, np.ndarray]]:
    """(masks (3, H, W), predicted IoUs (3,)) of each single-point prompt on each photo."""
    predictor = SamPredictor(model)
    out = []
    for name in PHOTOS:
        image = photo(name)
        predictor.set_image(image)
        for point in spread_points(image):
            masks, scores, _ = predictor.predict(
                point_coords=point[None], point_labels=np.array([1])
            )
            out.append((masks, scores))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def matched_ious(masks: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of (N, H, W) `masks`, its best IoU with any of `others` (M, H, W)."""
    a = masks.reshape(len(masks), -1).astype(np.float32)
    b = others.reshape(len(others), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1)).max(axis=1)


def small_photo() -> np.ndarray:
    return photo("coffee", 300)


def amg_masks(model: Sam) -> np.ndarray:
    records = SamAutomaticMaskGenerator(model, **AMG_OPTIONS).generate(small_photo())
    return np.stack([r["segmentation"] for r in records])


@pytest.fixture(scope="module")
def fp32_points() -> list[tuple[np.ndarray, np.ndarray]]:
    return point_outputs(load("samkit_default"))


@pytest.fixture(scope="module")
def fp32_amg() -> np.ndarray:
    return amg_masks(load("samkit_default"))


@pytest.fixture(scope="module")
def int8_model() -> Sam:
    return load("samkit_default", precision="int8")


# -- agreement with fp32 ---------------------------------------------------------------------
@pytest.mark.parametrize("precision", MODES)
def test_point_masks_and_scores_agree_with_fp32(
    precision: str, fp32_points: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    got = point_outputs(load("samkit_default", precision=precision))
    ious, score_diffs = [], []
    for (ref_masks, ref_scores), (masks, scores) in zip(fp32_points, got, strict=True):
        ious += [iou(a, b) for a, b in zip(ref_masks, masks, strict=True)]
        score_diffs += list(np.abs(scores - ref_scores))
    assert len(ious) == 3 * 4 * len(PHOTOS)
    # measured 0.991 for bf16, 0.979 for int8 (0.978 with 7-bit weights, FBGEMM limited to AVX2)
    assert np.mean(ious) >= 0.97, (precision, np.mean(ious), min(ious))
    # predicted IoUs within 0.02 (measured at most 0.004 for bf16, 0.013 for int8)
    assert max(score_diffs) <= 0.02, score_diffs


@pytest.mark.parametrize("precision", MODES)
def test_amg_mask_sets_match_fp32(precision: str, fp32_amg: np.ndarray) -> None:
    got = amg_masks(load("samkit_default", precision=precision))
    assert len(fp32_amg) >= 20  # a set worth comparing
    assert abs(len(got) - len(fp32_amg)) <= 0.1 * len(fp32_amg)
    # each mask's best match in the other set, both ways: measured 0.97 for bf16 and for int8
    # with VNNI, 0.95 for int8 without (FBGEMM limited to AVX2). A mask near a threshold can
    # swap for a neighbour, so this is coarser than the point masks' test.
    assert matched_ious(fp32_amg, got).mean() >= 0.93
    assert matched_ious(got, fp32_amg).mean() >= 0.93


# -- int8: what changes in the model ---------------------------------------------------------
def test_int8_replaces_the_encoder_and_decoder_linear_layers(int8_model: Sam) -> None:
    fp32 = load("samkit_default")
    for part in ("image_encoder", "mask_decoder"):
        quantized = getattr(int8_model, part)
        assert not [m for m in quantized.modules() if isinstance(m, nn.Linear)]
        before = dict(getattr(fp32, part).named_modules())
        layers = {n: m for n, m in quantized.named_modules() if isinstance(m, Int8Linear)}
        assert layers and all(isinstance(before[n], nn.Linear) for n in layers)
        for name, layer in layers.items():
            assert layer.weight_int8.dtype == torch.int8
            # the scale fits each row's largest weight
            assert int(layer.weight_int8.abs().max()) == weight_levels()
            # the float weight it stands for is within half a step of the original
            error = (layer.weight - before[name].weight).abs()
            assert bool((error <= layer.weight_scale[:, None] / 2 + 1e-7).all())
    # the prompt encoder stays as it was, and a state dict holds int8 tensors
    kinds = [type(m) for m in fp32.prompt_encoder.modules()]
    assert [type(m) for m in int8_model.prompt_encoder.modules()] == kinds
    state = int8_model.state_dict()
    assert state["image_encoder.blocks.0.attn.qkv.weight_int8"].dtype == torch.int8


def test_int8_layers_compute_with_the_weights_load_state_dict_gives() -> None:
    torch.manual_seed(0)
    a, b = Int8Linear(nn.Linear(16, 8)), Int8Linear(nn.Linear(16, 8))
    x = torch.randn(5, 16)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))  # the kernel's packed copy was remade
    assert torch.allclose(a(x), x @ a.weight.T + a.bias, atol=0.05)


def test_int8_weights_are_7_bit_where_int8_sums_saturate() -> None:
    """x86 CPUs without VNNI add pairs of u8 x s8 products in 16 bits: 255 * 127 * 2 would
    saturate, so their weights stay within +-63 (VNNI adds in 32 bits; ARM is not x86)."""
    flags = devices.cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    vnni = flags is not None and bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    assert devices.cpu_int8_saturates() == (x86 and not vnni)
    assert weight_levels() == (63 if x86 and not vnni else 127)
    assert 255 * weight_levels() * 2 <= 32767 or not devices.cpu_int8_saturates()


def test_int8_is_for_the_cpu_and_for_inference_only(int8_model: Sam) -> None:
    with pytest.raises(ValueError, match=r"int8 runs on the CPU only.*cuda"):
        load("samkit_default", device="cuda", precision="int8")
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        devices.resolve_precision("int8", torch.device("mps"))
    predictor = SamPredictor(int8_model)
    int8_model.train()
    try:
        with pytest.raises(ValueError, match="inference only"):
            predictor.set_image(small_photo())
    finally:
        int8_model.eval()


def test_int8_embeddings_are_cached_apart_from_fp32(int8_model: Sam) -> None:
    cache = EmbeddingCache(1 << 30)
    image = small_photo()
    fp32 = SamPredictor(load("samkit_default"), cache=cache)
    fp32.set_image(image)
    int8 = SamPredictor(int8_model, cache=cache)
    int8.set_image(image)
    assert len(cache) == 2  # a miss: the int8 encoder ran
    assert fp32.features is not None and int8.features is not None
    assert not torch.equal(fp32.features, int8.features)


# -- the model's precision, and who follows it -----------------------------------------------
@pytest.mark.parametrize("bad", ["bogus", "fp16", "INT8", ""])
def test_load_refuses_unknown_precisions(bad: str) -> None:
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8"):
        load("samkit_default", precision=bad)


def test_the_model_records_its_precision_and_predictors_follow_it(int8_model: Sam) -> None:
    a = torch.randn(4, 4)
    auto = devices.resolve_precision("auto", torch.device("cpu"))
    assert load("samkit_default").precision == "fp32"  # Meta's numbers by default
    assert load("samkit_default", precision="auto").precision == auto
    bf16 = load("samkit_default", precision="bf16")
    assert bf16.precision == "bf16" and int8_model.precision == "int8"
    inherited = SamPredictor(bf16)  # the official positional signature
    assert inherited.precision == "bf16"
    with inherited.autocast():
        assert (a @ a).dtype == torch.bfloat16
    assert SamAutomaticMaskGenerator(bf16).predictor.precision == "bf16"
    assert SamPredictor(int8_model).precision == "int8"
    # an explicit precision wins
    explicit = SamPredictor(bf16, precision="fp32")
    assert explicit.precision == "fp32"
    with explicit.autocast():
        assert (a @ a).dtype == torch.float32
    assert SamAutomaticMaskGenerator(bf16, precision="fp32").predictor.precision == "fp32"
    assert SamPredictor(load("samkit_default"), precision="auto").precision == auto


def test_a_callers_autocast_does_not_reach_the_decoder() -> None:
    # the factored decoder under autocast failed with mixed dtypes: a caller's autocast on any
    # device, and bf16 on a GPU, whose decoding ran under the precision's autocast
    model = load("samkit_default", precision="bf16")
    predictor = SamPredictor(model)
    image = small_photo()
    point = (np.array([[120, 90]]), np.array([1]))
    predictor.set_image(image)
    want = predictor.predict(*point)
    want_amg = amg_masks(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predictor.set_image(image)
        got = predictor.predict(*point)
        got_amg = amg_masks(model)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got_amg, want_amg)


def test_the_cpu_decodes_prompts_in_fp32_in_every_precision() -> None:
    bf16 = SamPredictor(load("samkit_default", precision="bf16"))
    a = torch.randn(4, 4)
    with bf16.decode_autocast():  # the decoder: fp32 on the CPU
        assert (a @ a).dtype == torch.float32
    bf16.set_image(np.asarray(data.astronaut()))
    fp32 = SamPredictor(bf16.model, precision="fp32")
    fp32._state = bf16._state  # the bf16 encoder's embedding, decoded by both
    point = (np.array([[200, 150]]), np.array([1]))
    for got, want in zip(bf16.predict(*point), fp32.predict(*point), strict=True):
        np.testing.assert_array_equal(got, want)


def test_int8_goes_only_with_an_int8_model(int8_model: Sam) -> None:
    with pytest.raises(ValueError, match="precision int8 needs a model loaded with it"):
        SamPredictor(load("samkit_default"), precision="int8")
    with pytest.raises(ValueError, match=r"precision int8.*cannot run at precision bf16"):
        SamPredictor(int8_model, precision="bf16")


# -- the command line ------------------------------------------------------------------------
def test_segment_runs_in_int8_and_writes_the_int8_mask(tmp_path: Path, int8_model: Sam) -> None:
    out = tmp_path / "mask.png"
    argv = ["segment", str(EXAMPLE), "--point", "100,90", "--precision", "int8"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    predictor = SamPredictor(int8_model)
    predictor.set_image(np.asarray(Image.open(EXAMPLE).convert("RGB")))
    masks, _, _ = predictor.predict(
        point_coords=np.array([[100.0, 90.0]]), point_labels=np.array([1]), multimask_output=False
    )
    assert np.array_equal(np.asarray(Image.open(out)) > 0, masks[0])


def test_bad_precisions_are_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.png"
    with pytest.raises(SystemExit) as stop:
        cli.main(
            ["segment", str(EXAMPLE), "--point", "5,5", "--out", str(out), "--precision", "nope"]
        )
    assert stop.value.code == 2
    assert "--precision: invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--coco", "x.json", "--out", str(tmp_path), "--precision", "int8"])
    assert "int8 is for inference only" in capsys.readouterr().err
    graph = tmp_path / "decoder.onnx"
    assert cli.main(["export-onnx", "--out", str(graph), "--precision", "int8"]) == 1
    assert "export-onnx writes fp32 graphs" in capsys.readouterr().err
    assert not out.exists() and not graph.exists()


def test_info_says_whether_int8_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("int8")]
    assert len(lines) == 1 and lines[0].startswith(
        "int8 (CPU): yes" if int8_available() else "int8 (CPU): no"
    )


def test_the_engine_checks_the_precision_and_gives_it_to_its_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        EngineConfig(model="samkit_default", out=str(tmp_path), precision="fp16")
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        EngineConfig(model="samkit_default", out=str(tmp_path), device="cuda", precision="int8")
    worker = ImageWorker(EngineConfig(model="samkit_default", out=str(tmp_path), precision="int8"))
    assert worker.generator.predictor.precision == "int8"

"""`samkit.embedding_cache`: an image goes through the image encoder once, and the cached
embedding gives the very masks a fresh pass gives; misses for anything that changes the
embedding; byte bounds in memory and on disk; a disk layer that survives a new cache object and
shrugs off corrupt files. Encoder passes are counted with a forward hook."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as read_safetensors

from samkit import SamAutomaticMaskGenerator, SamPredictor, cli, load
from samkit.build import build_samkit_tiny, seeded_init_
from samkit.embedding_cache import EmbeddingCache, embedding_bytes, model_digest
from samkit.modeling import Sam

ROOT = Path(__file__).resolve().parents[1]


class EncoderCalls:
    """Counts the images that go through `model.image_encoder` (a forward hook)."""

    def __init__(self, model: Sam) -> None:
        self.images = 0
        self._handle = model.image_encoder.register_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, inputs: tuple[torch.Tensor], output: object) -> None:
        self.images += len(inputs[0])

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def calls(tiny_sam: Sam) -> Iterator[EncoderCalls]:
    counter = EncoderCalls(tiny_sam)
    yield counter
    counter.remove()


def logits(predictor: SamPredictor) -> tuple[np.ndarray, ...]:
    point, label = np.array([[60.0, 50.0]]), np.array([1])
    return predictor.predict(point_coords=point, point_labels=label, return_logits=True)


def other_image(image: np.ndarray) -> np.ndarray:
    changed = image.copy()
    changed[0, 0, 0] ^= 1  # one bit of one pixel
    return changed


def test_second_set_image_skips_the_encoder_with_identical_masks(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls
) -> None:
    plain = SamPredictor(tiny_sam)
    plain.set_image(image)
    want = logits(plain)
    cached = SamPredictor(tiny_sam, cache=EmbeddingCache(1 << 30))
    cached.set_image(image)
    cached.set_image(image)
    assert calls.images == 2  # the plain predictor's pass and the first cached one
    for got, expected in zip(logits(cached), want, strict=True):
        assert np.array_equal(got, expected)
    # the same pixels given as BGR: the same encoder input
    cached.set_image(np.ascontiguousarray(image[:, :, ::-1]), image_format="BGR")
    assert calls.images == 2
    # batched embedding: only the new image goes through the encoder
    fresh = other_image(image)
    embeddings = cached.set_images([image, fresh, image], batch_size=3)
    assert calls.images == 3
    assert [e.original_size for e in embeddings] == [(120, 160)] * 3
    assert torch.equal(embeddings[0].features, embeddings[2].features)


def test_different_image_model_or_precision_misses(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls
) -> None:
    cache = EmbeddingCache(1 << 30)
    SamPredictor(tiny_sam, cache=cache).set_image(image)
    SamPredictor(tiny_sam, cache=cache).set_image(other_image(image))
    assert calls.images == 2 and len(cache) == 2
    SamPredictor(tiny_sam, cache=cache, precision="bf16").set_image(image)
    assert calls.images == 3 and len(cache) == 3

    other: Sam = seeded_init_(build_samkit_tiny(), seed=1)  # type: ignore[assignment]
    other_calls = EncoderCalls(other)  # the same architecture, other weights
    SamPredictor(other, cache=cache).set_image(image)
    assert other_calls.images == 1 and len(cache) == 4
    with torch.no_grad():  # the same object, changed in place: a new digest
        next(other.parameters()).add_(1.0)
    SamPredictor(other, cache=cache).set_image(image)
    assert other_calls.images == 2 and len(cache) == 5


def test_model_digest_follows_the_weights_not_the_object(tiny_sam: Sam) -> None:
    twin = copy.deepcopy(tiny_sam)
    assert model_digest(twin) == model_digest(tiny_sam)
    twin.load_state_dict(seeded_init_(build_samkit_tiny(), seed=5).state_dict())
    assert model_digest(twin) != model_digest(tiny_sam)
    assert model_digest(seeded_init_(build_samkit_tiny(), seed=0)) == model_digest(tiny_sam)


def test_memory_bound_evicts_the_least_recently_used(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls
) -> None:
    a, b, c = image, other_image(image), image[::-1].copy()
    probe = SamPredictor(tiny_sam)
    probe.set_image(a)
    size = embedding_bytes(probe._require_image(), tiny_sam)
    assert size > 5 * probe.get_image_embedding().nbytes  # the decoder's state counts too
    cache = EmbeddingCache(2 * size + size // 2)  # room for two images
    p = SamPredictor(tiny_sam, cache=cache)
    p.set_image(a)
    p.set_image(b)
    p.set_image(a)  # a is now the most recently used
    p.set_image(c)  # b goes
    assert calls.images == 4 and len(cache) == 2 and cache.nbytes == 2 * size
    p.set_image(a)
    assert calls.images == 4
    p.set_image(b)
    assert calls.images == 5
    tiny = EmbeddingCache(size - 1)  # an embedding larger than the bound is not kept
    SamPredictor(tiny_sam, cache=tiny).set_image(a)
    assert len(tiny) == 0 and tiny.nbytes == 0


def test_disk_layer_survives_a_new_cache_object(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls, tmp_path: Path
) -> None:
    first = SamPredictor(tiny_sam, cache=EmbeddingCache(1 << 30, tmp_path))
    first.set_image(image)
    want = logits(first)
    (path,) = tmp_path.iterdir()
    assert path.suffix == ".safetensors" and len(path.stem) == 64
    again = SamPredictor(tiny_sam, cache=EmbeddingCache(0, tmp_path))  # nothing in memory
    again.set_image(image)
    assert calls.images == 1
    for got, expected in zip(logits(again), want, strict=True):
        assert np.array_equal(got, expected)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":  # one bit of the embedding's data: the header still parses
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif how == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "flipped", "garbage", "empty"])
def test_corrupt_file_is_a_miss_and_is_replaced(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls, tmp_path: Path, how: str
) -> None:
    SamPredictor(tiny_sam, cache=EmbeddingCache(0, tmp_path)).set_image(image)
    (path,) = tmp_path.iterdir()
    good = read_safetensors(path.read_bytes())["features"]
    corrupt(path, how)
    SamPredictor(tiny_sam, cache=EmbeddingCache(0, tmp_path)).set_image(image)
    assert calls.images == 2  # the corrupt file was not used
    assert torch.equal(read_safetensors(path.read_bytes())["features"], good)  # whole again
    SamPredictor(tiny_sam, cache=EmbeddingCache(0, tmp_path)).set_image(image)
    assert calls.images == 2


def test_file_of_another_key_is_a_miss(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls, tmp_path: Path
) -> None:
    """A whole, valid file renamed to another image's key is not that image's embedding."""
    cache = EmbeddingCache(0, tmp_path)
    SamPredictor(tiny_sam, cache=cache).set_image(image)
    (path,) = tmp_path.iterdir()
    fresh = other_image(image)
    p = SamPredictor(tiny_sam, cache=cache)
    input_image, _ = p._input_tensor(fresh, "RGB")
    path.rename(tmp_path / f"{cache.key(input_image, tiny_sam, 'fp32')}.safetensors")
    p.set_image(fresh)
    assert calls.images == 2


def test_disk_bound_deletes_the_least_recently_used(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls, tmp_path: Path
) -> None:
    a, b, c = image, other_image(image), image[::-1].copy()
    SamPredictor(tiny_sam, cache=EmbeddingCache(0, tmp_path)).set_image(a)
    (file_a,) = tmp_path.iterdir()
    size = file_a.stat().st_size
    cache = EmbeddingCache(0, tmp_path, max_disk_bytes=2 * size + size // 2)
    p = SamPredictor(tiny_sam, cache=cache)
    os.utime(file_a, (1, 1))  # long ago, beyond any timestamp granularity
    p.set_image(b)
    file_b = cache.disk_files()[-1]
    os.utime(file_b, (2, 2))
    p.set_image(a)  # a disk hit: a is used again, b is now the oldest
    assert calls.images == 2
    p.set_image(c)
    assert calls.images == 3
    assert file_a.exists() and not file_b.exists() and len(cache.disk_files()) == 2
    assert sum(f.stat().st_size for f in cache.disk_files()) <= cache.max_disk_bytes


def test_amg_embeds_each_crop_once_across_two_generate_calls(
    tiny_sam: Sam, image: np.ndarray, calls: EncoderCalls
) -> None:
    options: dict[str, Any] = {"points_per_side": 4, "crop_n_layers": 1}
    options |= {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    plain = SamAutomaticMaskGenerator(tiny_sam, **options).generate(image)
    assert calls.images == 5  # the whole image and 4 crops
    generator = SamAutomaticMaskGenerator(tiny_sam, cache=EmbeddingCache(1 << 30), **options)
    first = generator.generate(image)
    second = generator.generate(image)
    (batched,) = generator.generate_batch([image])
    assert calls.images == 10
    assert len(plain) > 0
    for records in (first, second, batched):
        assert [r["segmentation"].tolist() for r in records] == [
            r["segmentation"].tolist() for r in plain
        ]
        assert [r["predicted_iou"] for r in records] == [r["predicted_iou"] for r in plain]


def test_segment_command_fills_the_cache_the_library_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = ROOT / "examples" / "shapes.png"
    folder = tmp_path / "embeddings"
    argv = ["segment", str(example), "--model", "samkit_tiny", "--point", "100,90"]
    argv += ["--embedding-cache", str(folder)]
    assert cli.main([*argv, "--out", str(tmp_path / "a.png")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "b.png")]) == 0
    assert len(list(folder.iterdir())) == 1
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "b.png"))
    assert np.array_equal(a, b)
    # another model object with the same weights, at the command line's precision: the same key
    model = load("samkit_tiny", precision="auto")
    counter = EncoderCalls(model)
    SamPredictor(model, cache=EmbeddingCache(0, folder)).set_image(np.asarray(Image.open(example)))
    assert counter.images == 0


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(-1)
    with pytest.raises(ValueError, match="max_disk_bytes"):
        EmbeddingCache(0, tmp_path, max_disk_bytes=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        EmbeddingCache(0, tmp_path / "file")
    cache = EmbeddingCache(1 << 20, tmp_path)
    for key in ["../../etc/passwd", "ABC", "0" * 63, "0" * 64 + "/x"]:
        with pytest.raises(ValueError, match="64 lowercase hex"):
            cache.get(key, None, lambda f: None)  # type: ignore[arg-type, return-value]

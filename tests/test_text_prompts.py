"""Text prompts in the model, the predictor, the phrases of synthetic scenes and training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit import SamPredictor
from samkit.checkpoints import read_metadata, read_state_dict, write_safetensors
from samkit.data import make_scene
from samkit.data.phrases import (
    COLOUR_WORDS,
    KINDS,
    SHAPE_WORDS,
    colour_name,
    plural,
    scene_phrases,
    words,
)
from samkit.loading import TEXT_HEAD_PREFIX
from samkit.modeling import Sam
from samkit.train import TrainConfig
from samkit.train.step import simulate_rounds, step_generator
from samkit.train.text import ALONE, NONE, WITH_POINT, TextPrompts, choose_text
from samkit.train.trainer import new_model

DIM = 384  # all-MiniLM-L6-v2


def with_text_head(model: Sam, seed: int = 0) -> Sam:
    torch.manual_seed(seed)
    model.prompt_encoder.enable_text(DIM)
    model.text_encoder = "minilm"
    return model


@pytest.fixture(scope="module")
def scene() -> samkit.data.Scene:
    return make_scene(3, 0, 128)


# -- the model --------------------------------------------------------------------------------
def test_text_adds_exactly_one_sparse_token_last(tiny_sam: Sam) -> None:
    model = with_text_head(samkit.load("samkit_tiny"))
    pe = model.prompt_encoder
    points = (torch.tensor([[[10.0, 20.0]]]), torch.tensor([[1]]))
    text = torch.randn(1, DIM)
    plain, dense = pe(points=points, boxes=None, masks=None)
    both, dense_t = pe(points=points, boxes=None, masks=None, text=text)
    assert both.shape[1] == plain.shape[1] + 1
    assert torch.equal(both[:, :-1], plain)  # the point tokens are untouched
    assert torch.allclose(both[:, -1], pe.text_projection(text))  # type: ignore[misc]
    assert torch.equal(dense, dense_t)
    alone, _ = pe(points=None, boxes=None, masks=None, text=text.repeat(3, 1))
    assert alone.shape == (3, 1, pe.embed_dim)


def test_a_text_head_changes_nothing_without_text(scene: samkit.data.Scene) -> None:
    plain = samkit.load("samkit_default")
    headed = with_text_head(samkit.load("samkit_default"))
    point = {"point_coords": np.array([[40.0, 50.0]]), "point_labels": np.array([1])}
    results = []
    for model in (plain, headed):
        predictor = SamPredictor(model)
        predictor.set_image(scene.image)
        results.append(predictor.predict(**point))
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


def test_text_changes_the_masks(scene: samkit.data.Scene) -> None:
    predictor = SamPredictor(with_text_head(samkit.load("samkit_default")))
    predictor.set_image(scene.image)
    point = {"point_coords": np.array([[40.0, 50.0]]), "point_labels": np.array([1])}
    _, _, plain = predictor.predict(**point, multimask_output=False)
    _, _, texted = predictor.predict(**point, multimask_output=False, text="the red disc")
    assert not np.allclose(plain, texted)
    masks, scores, low = predictor.predict(text="the red disc", multimask_output=False)
    assert masks.shape == (1, 128, 128) and scores.shape == (1,) and low.shape == (1, 128, 128)


def test_predict_torch_takes_a_batch_of_text_vectors(scene: samkit.data.Scene) -> None:
    predictor = SamPredictor(with_text_head(samkit.load("samkit_default")))
    predictor.set_image(scene.image)
    vectors = predictor.encode_text(["the red disc", "all the stars"])
    masks, ious, _ = predictor.predict_torch(None, None, text_embeddings=vectors)
    assert masks.shape == (2, 3, 128, 128) and ious.shape == (2, 3)
    one, _, _ = predictor.predict(text="all the stars")
    assert np.array_equal(masks[1].numpy(), one)


def test_text_errors_are_clear(scene: samkit.data.Scene) -> None:
    predictor = SamPredictor(samkit.load("samkit_tiny"))
    predictor.set_image(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="has no text head"):
        predictor.predict(text="the red disc")
    headed = SamPredictor(with_text_head(samkit.load("samkit_default")))
    headed.set_image(scene.image)
    with pytest.raises(ValueError, match="empty"):
        headed.predict(text="   ")
    with pytest.raises(ValueError, match="at most 256"):
        headed.predict(text="red " * 300)
    with pytest.raises(ValueError, match=r"text_embeddings must be BxD"):
        headed.predict_torch(None, None, text_embeddings=torch.zeros(DIM))
    with pytest.raises(ValueError, match="NaN"):
        headed.predict_torch(None, None, text_embeddings=torch.full((1, DIM), float("nan")))
    with pytest.raises(ValueError, match=r"\(B, 384\)"):
        headed.predict_torch(None, None, text_embeddings=torch.zeros(1, 7))
    with pytest.raises(ValueError, match="batch sizes differ"):
        coords = torch.zeros(2, 1, 2)
        headed.predict_torch(coords, torch.ones(2, 1), text_embeddings=torch.zeros(1, DIM))


def test_weights_with_a_text_head_load_with_it(tmp_path: Path) -> None:
    model = with_text_head(samkit.load("samkit_default"), seed=3)
    path = tmp_path / "text.safetensors"
    write_safetensors(
        model.state_dict(),
        path,
        metadata={"samkit_variant": "samkit_default", "samkit_text_encoder": "minilm"},
    )
    loaded = samkit.load(path)
    assert loaded.text_encoder == "minilm"
    assert loaded.prompt_encoder.text_projection is not None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # the same file without the head is the plain model again
    plain = {k: v for k, v in read_state_dict(path).items() if not k.startswith(TEXT_HEAD_PREFIX)}
    write_safetensors(plain, tmp_path / "plain.safetensors")
    again = samkit.load(tmp_path / "plain.safetensors")
    assert again.prompt_encoder.text_projection is None and again.text_encoder is None


# -- words and phrases ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((230, 20, 20), "red"),
        ((20, 30, 220), "blue"),
        ((30, 200, 40), "green"),
        ((250, 250, 250), "white"),
        ((10, 10, 10), "black"),
        ((128, 128, 128), "grey"),
        ((240, 230, 30), "yellow"),
        ((120, 70, 20), "brown"),
        ((240, 140, 20), "orange"),
    ],
)
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    assert colour_name(rgb) == name


def test_plurals() -> None:
    assert [plural(n) for n in ("disc", "box", "round shape", "star shape")] == [
        "discs",
        "boxes",
        "round shapes",
        "star shapes",
    ]


def test_phrases_are_deterministic_and_name_one_mask() -> None:
    for index in range(6):
        scene = make_scene(5, index, 128)
        a = scene_phrases(scene, np.random.default_rng(index))
        b = scene_phrases(scene, np.random.default_rng(index))
        assert a == b and a
        area = 128 * 128
        looks = [words(o, area) for o in scene.objects]
        singles = [i for i, o in enumerate(scene.objects) if o.kind != "group"]
        for p in a:
            assert p.kind in KINDS
            if p.kind == "colour+shape":  # no other single object shares its colour and shape
                same = [
                    i
                    for i in singles
                    if (looks[i].colour, looks[i].shape)
                    == (looks[p.target].colour, looks[p.target].shape)
                ]
                assert same == [p.target]
            if p.kind == "group":
                assert scene.objects[p.target].kind == "group"
            if p.kind == "part":
                assert p.target in [part for part, _ in scene.parts]


def test_heldout_phrases_use_only_heldout_synonyms() -> None:
    for table in (SHAPE_WORDS, COLOUR_WORDS):
        train_words = {w for syn, _ in table.values() for w in syn}
        heldout_words = {w for _, syn in table.values() for w in syn}
        assert not any(t in h for t in train_words for h in heldout_words)
    seen = set()
    for index in range(8):
        scene = make_scene(6, index, 128)
        for p in scene_phrases(scene, np.random.default_rng(0), heldout=True):
            if p.kind not in ("colour+shape", "shape", "colour"):
                continue
            table = COLOUR_WORDS if p.kind == "colour" else SHAPE_WORDS
            train_words = {w for syn, _ in table.values() for w in syn}
            heldout_words = {w for _, syn in table.values() for w in syn}
            assert any(w in p.text for w in heldout_words), p.text
            assert not any(w in p.text for w in train_words), p.text
            seen.add(p.kind)
    assert seen == {"colour+shape", "shape", "colour"}


# -- training ---------------------------------------------------------------------------------
def text_config(**changes: object) -> TrainConfig:
    base = TrainConfig(
        model="samkit_default",
        masks_per_step=6,
        min_rounds=2,
        max_rounds=2,
        text_encoder="minilm",
        text_prob=1.0,
        text_only_prob=0.5,
        precision="fp32",
        val_scenes=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_choose_text_gives_only_nameable_targets_a_phrase(scene: samkit.data.Scene) -> None:
    named = {p.target for p in scene_phrases(scene, np.random.default_rng(0))}
    picked = list(range(len(scene.objects)))
    text = choose_text(scene, picked, step_generator(0, 0), text_config())
    modes = text.mode.tolist()
    assert set(modes) <= {NONE, WITH_POINT, ALONE}
    assert {i for i, m in enumerate(modes) if m != NONE} == named  # text_prob 1: all named
    assert torch.allclose(text.vectors[text.mode != NONE].norm(dim=1), torch.ones(len(named)))
    none = choose_text(scene, picked, step_generator(0, 0), text_config(text_prob=0.0))
    assert (none.mode == NONE).all()


def test_text_rounds_train_the_projection(scene: samkit.data.Scene) -> None:
    config = text_config()
    model = new_model(config, read_state_dict(samkit.loading.bundled_path("samkit_default")))
    assert model.prompt_encoder.text_projection is not None
    with torch.no_grad():
        embedding = model.image_encoder(
            model.preprocess(torch.from_numpy(scene.image).permute(2, 0, 1).float())[None]
        )
    targets = torch.from_numpy(scene.masks[:6])
    mode = torch.tensor([NONE, WITH_POINT, ALONE, ALONE, WITH_POINT, NONE])
    text = TextPrompts(torch.nn.functional.normalize(torch.randn(6, DIM), dim=1), mode)
    stats = simulate_rounds(
        model, embedding, targets, step_generator(1, 1), config, True, text=text
    )
    assert stats.masks == 6 and np.isfinite(stats.loss)
    grad = model.prompt_encoder.text_projection.layers[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_no_text_rounds_are_unchanged_by_the_text_code(scene: samkit.data.Scene) -> None:
    """Without text, a step takes the same random draws and gives the same loss as a text-free
    config: the text groups add nothing to a text-free run."""
    plain_config = text_config(text_encoder="", text_prob=0.0)
    losses = []
    for text in (None, TextPrompts(torch.zeros(6, DIM), torch.full((6,), NONE))):
        torch.manual_seed(0)
        model = new_model(
            plain_config, read_state_dict(samkit.loading.bundled_path("samkit_default"))
        )
        with torch.no_grad():
            emb = model.image_encoder(
                model.preprocess(torch.from_numpy(scene.image).permute(2, 0, 1).float())[None]
            )
        if text is not None:
            with_text_head(model)
        targets = torch.from_numpy(scene.masks[:6])
        losses.append(
            simulate_rounds(
                model, emb, targets, step_generator(2, 2), plain_config, False, text=text
            ).loss
        )
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_a_text_run_writes_its_encoder_into_the_weights(tmp_path: Path) -> None:
    from samkit.train import train

    config = text_config(
        total_steps=2, warmup_steps=1, lr_milestones=(), freeze_image_encoder=True,
        init_from=str(samkit.loading.bundled_path("samkit_default")),
    )  # fmt: skip
    train(config, tmp_path / "run")
    path = tmp_path / "run" / "model.safetensors"
    assert read_metadata(path)["samkit_text_encoder"] == "minilm"
    model = samkit.load(path)
    predictor = SamPredictor(model)
    predictor.set_image(make_scene(3, 1, 128).image)
    masks, _, _ = predictor.predict(text="the blue star", multimask_output=False)
    assert masks.shape == (1, 128, 128)


def test_phrase_vectors_are_cached_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import samkit.text as text

    monkeypatch.setattr(text, "CACHED_PHRASES", 2)
    monkeypatch.setattr(text, "_VECTORS", type(text._VECTORS)())
    first = text.encode_cached("minilm", ["the red disc", "all the stars"])
    # the cache encodes its missing phrases in sorted order: a batch in another order may
    # differ in the last float bits (~2e-7 here), where another phrase's differs by up to ~0.2
    assert torch.allclose(
        first,
        text.get_text_encoder("minilm").encode(["the red disc", "all the stars"]),
        rtol=0,
        atol=1e-5,
    )
    kept = text._VECTORS["minilm", "all the stars"]
    again = text.encode_cached("minilm", ["all the stars"])
    assert text._VECTORS["minilm", "all the stars"] is kept  # not encoded again
    assert torch.equal(again[0], kept)
    text.encode_cached("minilm", ["a blue star"])  # evicts the least recently used: red disc
    assert list(text._VECTORS) == [("minilm", "all the stars"), ("minilm", "a blue star")]
    with pytest.raises(ValueError, match="empty"):
        text.encode_cached("minilm", [""])


def test_the_text_head_can_learn_at_its_own_rate() -> None:
    from samkit.train.trainer import build_optimizer

    model = new_model(text_config())
    head = {id(p) for p in model.prompt_encoder.text_projection.parameters()}  # type: ignore[union-attr]
    assert len(build_optimizer(model, text_config()).param_groups) == 2  # text_lr 0: as the rest
    groups = build_optimizer(model, text_config(text_lr=1e-3, lr=2e-4)).param_groups
    assert [g["lr"] for g in groups] == [2e-4, 2e-4, 1e-3]
    assert {id(p) for p in groups[2]["params"]} == head
    assert not head & {id(p) for g in groups[:2] for p in g["params"]}
    with pytest.raises(ValueError, match="text_lr must be >= 0"):
        text_config(text_lr=-1.0)

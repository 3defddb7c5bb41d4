"""The text grounder: colour naming, region features, proposals, the predictor's answers, the
bundled samkit_text, and its training command (resumed, and rejecting bad options)."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit import SamPredictor
from samkit.cli import main as cli_main
from samkit.data import make_scene
from samkit.data.phrases import COLOUR_NAMES, colour_indices, colour_name, scene_phrases
from samkit.loading import BUNDLED_GROUNDED, bundled_path, model_identity
from samkit.text import encode_cached
from samkit.text.ground import grid_points, image_proposals, propose, work_masks
from samkit.text.grounding import CROP, N_COLOURS, N_FEATURES, region_features
from samkit.train.grounder import main as train_main

pytest.importorskip("transformers")


def reference_name(rgb: tuple[int, int, int]) -> str:
    """The colour-naming rule written with colorsys, one colour at a time."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    hue = 360 * h
    if v < 0.25:
        return "black"
    if s < 0.2:
        return "white" if v > 0.8 else "grey"
    if hue < 15 or hue >= 335:
        return "red"
    if hue < 45:
        return "brown" if v < 0.6 else "orange"
    for limit, name in ((70, "yellow"), (165, "green"), (200, "cyan"), (255, "blue")):
        if hue < limit:
            return name
    return "purple" if hue < 290 else "pink"


def test_colour_indices_name_every_pixel_as_the_scalar_rule() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20000, 3)).astype(np.uint8)
    names = [COLOUR_NAMES[i] for i in colour_indices(rgb)]
    assert names == [reference_name(tuple(int(c) for c in px)) for px in rgb]
    assert colour_name((250, 10, 10)) == "red"
    assert colour_indices(rgb.reshape(100, 200, 3)).shape == (100, 200)


def test_region_features_describe_colour_size_components_and_outline() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[5:15, 5:25] = (230, 20, 20)  # a red 10 x 20 rectangle
    image[25:30, 40:45] = image[25:30, 50:55] = (20, 20, 230)  # two blue squares
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 25:30, 40:45] = masks[1, 25:30, 50:55] = True
    numbers, crops = region_features(image, masks, np.array([0.9, 0.5]))
    assert numbers.shape == (2, N_FEATURES) and crops.shape == (2, 4, CROP, CROP)
    red, blue, black = (COLOUR_NAMES.index(n) for n in ("red", "blue", "black"))
    assert numbers[0, red] == 1 and numbers[1, blue] == 1  # inside: one colour name each
    assert numbers[0, N_COLOURS + black] == 1  # the ring around the rectangle is black
    area, aspect, fill, parts, solidity, _, rect_fill, rect_aspect, corners = numbers[:, -10:-1].T
    assert area[0] == pytest.approx(np.log(200 / 2400))  # log area fraction
    assert aspect[0] == pytest.approx(np.log(20 / 10))  # log aspect (w / h) of the box
    assert fill[1] == pytest.approx(50 / (5 * 15))  # fill of the bounding box
    assert parts.tolist() == pytest.approx([1 / 5, 2 / 5])  # connected components
    assert solidity.tolist() == pytest.approx([1, 1]) and rect_fill.tolist() == pytest.approx(
        [1, 1]
    )
    assert rect_aspect[1] == pytest.approx(0)  # the largest part is a square
    assert corners.tolist() == pytest.approx([0.4, 0.4])
    assert numbers[:, -1].tolist() == pytest.approx([0.9, 0.5])
    # the 2:1 rectangle fills the middle half of its square outline, nothing above or below;
    # the image's pixels there are red (0-1 RGB), black above and below
    assert crops[0, 0, CROP // 2].min() == 1 and crops[0, 0, 0].max() == 0
    red_rgb = [230 / 255, 20 / 255, 20 / 255]
    assert crops[0, 1:, CROP // 2].mean(1).tolist() == pytest.approx(red_rgb)
    assert crops[0, 1:, 0].max() == 0
    with pytest.raises(ValueError, match="masks must be"):
        region_features(image, masks[:, :30], np.zeros(2))
    with pytest.raises(ValueError, match="non-empty"):
        region_features(image, np.zeros((1, 40, 60), bool), np.zeros(1))


@pytest.fixture(scope="module")
def grounded() -> SamPredictor:
    predictor = SamPredictor(samkit.load("samkit_text"))
    predictor.set_image(make_scene(3, 0, 128).image)
    return predictor


def test_proposals_are_distinct_confident_masks_kept_with_the_embedding(
    grounded: SamPredictor,
) -> None:
    kept = image_proposals(grounded)
    assert image_proposals(grounded) is kept  # computed once per image, without the masks
    assert kept.masks is None
    found = propose(grounded, grid_points((128, 128)))
    assert torch.equal(found.numbers, kept.numbers) and torch.equal(found.points, kept.points)
    assert found.masks is not None
    k = len(found.points)
    assert 5 < k <= 3 * 16 * 16
    assert found.numbers.shape == (k, N_FEATURES) and found.masks.shape == (k, 128, 128)
    assert (found.numbers[:, -1] > 0.5).all()  # the model's score of each one
    assert (found.numbers[:, -1].diff() <= 0).all()  # best first
    masks = found.masks.flatten(1).float()
    inter = masks @ masks.T
    iou = inter / (masks.sum(1)[:, None] + masks.sum(1)[None] - inter)
    assert (iou.fill_diagonal_(0) < 0.9).all()  # near-duplicates dropped
    # each is the mask its point prompt gives
    point, slot = found.points[:1, None], int(found.slots[0])
    low_res, _ = grounded.decode_low_res(point, torch.ones(1, 1, dtype=torch.int), None, None, True)
    assert torch.equal(work_masks(grounded, low_res[0])[slot], found.masks[0])


def test_text_with_a_click_orders_the_clicks_masks_by_the_phrase(grounded: SamPredictor) -> None:
    point, label = np.array([[64, 64]]), np.array([1])
    plain, _, _ = grounded.predict(point, label, multimask_output=True)
    single, _, _ = grounded.predict(point, label, multimask_output=False)
    masks, scores, _ = grounded.predict(point, label, text="the blue star", multimask_output=True)
    candidates = [*plain, single[0]]
    assert all(any(np.array_equal(m, c) for c in candidates) for m in masks)
    pixels = grounded._require_image().pixels
    assert pixels is not None
    numbers, crops = region_features(pixels, masks, scores)
    model = grounded.model
    assert model.text_grounder is not None
    vector = encode_cached(model.text_encoder or "", ["the blue star"])
    ranked = model.text_grounder(vector, numbers, crops)[0]
    assert (ranked.diff() <= 1e-5).all()  # best first
    # batched: one row per phrase, each as the single-phrase call gives it
    coords = torch.as_tensor(grounded.transform.apply_coords(point, (128, 128)))[None].float()
    texts = grounded.encode_text(["the blue star", "the red disc"])
    batch, _, _ = grounded.predict_torch(
        coords.expand(2, -1, -1), torch.ones(2, 1, dtype=torch.int), text_embeddings=texts
    )
    assert np.array_equal(batch[0].numpy(), masks)
    # two clicks settle the object: one mask out is the model's own, as without text
    points, labels = np.array([[64, 64], [20, 100]]), np.array([1, 0])
    own, _, _ = grounded.predict(points, labels, multimask_output=False)
    told, _, _ = grounded.predict(points, labels, text="the blue star", multimask_output=False)
    assert np.array_equal(own, told)
    three, _, _ = grounded.predict(points, labels, multimask_output=True)
    ordered, _, _ = grounded.predict(points, labels, text="the blue star", multimask_output=True)
    assert sorted(m.sum() for m in three) == sorted(m.sum() for m in ordered)


def test_samkit_text_is_samkit_default_plus_a_grounder() -> None:
    plain, text = samkit.load("samkit_default"), samkit.load("samkit_text")
    assert plain.text_grounder is None and not plain.takes_text
    assert text.takes_text and text.text_encoder == "minilm"
    scene = make_scene(3, 1, 128)
    outs = []
    for model in (plain, text):
        predictor = SamPredictor(model)
        predictor.set_image(scene.image)
        outs.append(predictor.predict(np.array([[30, 90]]), np.array([1])))
    for a, b in zip(*outs, strict=True):  # prompts without text are untouched
        assert np.array_equal(a, b)
    base, grounder = BUNDLED_GROUNDED["samkit_text"]
    total = bundled_path(base).stat().st_size + bundled_path(grounder).stat().st_size
    assert total < 25 * 2**20  # the bundled weights' budget
    identity = model_identity("samkit_text")["weights"]
    assert identity.startswith("sha256:") and "+" in identity
    with pytest.raises(ValueError, match="no text head"):
        SamPredictor(plain).encode_text(["the red disc"])


def test_info_lists_samkit_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info"]) == 0
    assert "bundled model: samkit_text (samkit_default + text grounder" in capsys.readouterr().out


def test_training_command_trains_resumes_and_checks_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "small.json"
    config.write_text(
        json.dumps({"scenes": 3, "steps": 4, "scenes_per_step": 2, "random_points": 8})
    )
    out = tmp_path / "run"
    assert train_main(["--out", str(out), "--config", str(config), "--threads", "1"]) == 0
    model = samkit.load(out / "model.safetensors")
    assert model.text_grounder is not None and model.text_encoder == "minilm"
    saved = torch.load(out / "grounder_checkpoint.pt", weights_only=True)
    assert saved["step"] == 4
    # a second run resumes: the proposals are read back, not made again
    made = (out / "proposals.pt").stat().st_mtime_ns
    assert train_main(["--out", str(out), "--config", str(config)]) == 0
    assert (out / "proposals.pt").stat().st_mtime_ns == made
    predictor = SamPredictor(model)
    predictor.set_image(make_scene(3, 2, 128).image)
    masks, _, _ = predictor.predict(text="the green star", multimask_output=False)
    assert masks.shape == (1, 128, 128)
    saved["grounder"].pop("polar.0.weight")  # a checkpoint of another grounder design
    torch.save(saved, out / "grounder_checkpoint.pt")
    with pytest.raises(SystemExit):
        train_main(["--out", str(out), "--config", str(config)])
    assert "another design" in capsys.readouterr().err
    config.write_text(json.dumps({"scenes": 3, "steps": 5, "scenes_per_step": 2}))
    for argv, why in (
        (["--out", str(out), "--config", str(config)], "another config"),
        (["--out", str(config)], "not a folder"),
        (["--out", str(tmp_path / "x"), "--threads", "0"], "--threads"),
        (["--out", str(tmp_path / "x"), "--device", "cuda:7"], "cuda"),
    ):
        with pytest.raises(SystemExit):
            train_main(argv)
        assert why in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(SystemExit):
        train_main(["--out", str(tmp_path / "y"), "--config", str(bad)])
    assert "unknown fields" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() and not (tmp_path / "x").exists()


def test_grid_points_cover_the_resized_image() -> None:
    points = grid_points((100, 200), n=4)
    assert points.shape == (16, 2)
    assert points[:, 0].unique().tolist() == [25.0, 75.0, 125.0, 175.0]  # X across the width
    assert points[:, 1].unique().tolist() == [12.5, 37.5, 62.5, 87.5]


def test_propose_needs_an_image_set_for_a_grounder() -> None:
    predictor = SamPredictor(samkit.load("samkit_default"))
    predictor.set_image(make_scene(3, 0, 128).image)
    with pytest.raises(RuntimeError, match="pixels"):
        propose(predictor, grid_points((128, 128), 2))


def test_outline_numbers_tell_a_disc_from_a_star() -> None:
    import cv2

    masks = np.zeros((2, 80, 80), np.uint8)
    cv2.circle(masks[0], (40, 40), 25, 1, -1)
    angles = np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 30, 12)
    star = np.stack([40 + radii * np.sin(angles), 40 - radii * np.cos(angles)], 1)
    cv2.fillPoly(masks[1], [star.round().astype(np.int32)], 1)
    numbers, _ = region_features(np.zeros((80, 80, 3), np.uint8), masks.astype(bool), np.ones(2))
    solidity, circularity, corners = numbers[:, -6], numbers[:, -5], numbers[:, -2]
    assert solidity[0] > 0.95 > 0.7 > solidity[1]
    assert circularity[0] > 0.85 > 0.5 > circularity[1]
    assert corners[1] == pytest.approx(1.0)  # ten corners


def test_grounder_weights_of_any_width_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    from samkit.checkpoints import write_safetensors
    from samkit.loading import GROUNDER_PREFIX
    from samkit.text.grounding import TextGrounder

    model = samkit.load("samkit_default")
    model.text_grounder = TextGrounder(384, width=32)
    path = tmp_path / "wide.safetensors"
    write_safetensors(model.state_dict(), path, {"samkit_variant": "samkit_default"})
    loaded = samkit.load(path)
    assert isinstance(loaded.text_grounder, TextGrounder)
    assert loaded.text_grounder.scale.item() == pytest.approx(32**-0.5)
    broken = {k: v for k, v in model.state_dict().items() if not k.endswith("fuse.0.weight")}
    write_safetensors(broken, path, {"samkit_variant": "samkit_default"})
    with pytest.raises(ValueError, match=r"wide\.safetensors: the text grounder's weights do not"):
        samkit.load(path)
    earlier = {k: v for k, v in model.state_dict().items() if ".silhouette_polar." not in k}
    write_safetensors(earlier, path, {"samkit_variant": "samkit_default"})
    with pytest.raises(ValueError, match="earlier samkit design: train it again"):
        samkit.load(path)
    alone = {k: v for k, v in broken.items() if not k.startswith(GROUNDER_PREFIX + "text.")}
    write_safetensors(alone, path, {"samkit_variant": "samkit_default"})
    with pytest.raises(ValueError, match="text grounder weights without"):
        samkit.load(path)


def test_a_phrase_adds_the_log_chance_of_the_colour_and_shape_it_names() -> None:
    from samkit.text.grounding import N_ATTRIBUTES, SHAPE_CLASSES, TextGrounder

    torch.manual_seed(0)
    grounder = TextGrounder(8, width=16).eval()
    phrases, regions = torch.randn(2, 16), torch.randn(3, 16)
    dot = phrases @ regions.T * grounder.scale
    red, disc = COLOUR_NAMES.index("red"), N_COLOURS + 1 + SHAPE_CLASSES.index("disc")
    unnamed, no_shape = N_COLOURS, N_ATTRIBUTES - 1
    with torch.no_grad():
        grounder.text_attributes.weight.zero_()
        grounder.attributes.weight.zero_()
        bias = torch.full((N_ATTRIBUTES,), -30.0)
        bias[[unnamed, no_shape]] = 30.0  # names neither colour nor shape
        grounder.text_attributes.bias.copy_(bias)
        assert torch.allclose(grounder.score(phrases, regions), dot, atol=1e-5)
        bias[[unnamed, red]] = torch.tensor([-30.0, 30.0])  # names "red" only
        grounder.text_attributes.bias.copy_(bias)
        has = torch.zeros(N_ATTRIBUTES)
        has[[red, disc]] = 2.0
        grounder.attributes.bias.copy_(has)
        colours = has[: N_COLOURS + 1].log_softmax(-1)
        got = grounder.score(phrases, regions)
    assert torch.allclose(got, dot + colours[red], atol=1e-4)


def test_phrase_labels_name_the_colour_and_shape_each_phrase_says() -> None:
    from samkit.data.phrases import COLOUR_WORDS, SHAPE_WORDS, words
    from samkit.text.grounding import SHAPE_CLASSES
    from samkit.train.grounder import GrounderConfig, phrase_labels

    config = GrounderConfig(phrase_draws=1)
    seen = set()
    for index in range(6):
        scene = make_scene(config.scene_seed, index, 128)
        look = [words(o, 128 * 128) for o in scene.objects]
        phrases = scene_phrases(scene, np.random.default_rng([config.scene_seed, index, 0]))
        labels = phrase_labels(config, index, scene)
        assert [(p.text, p.target) for p in phrases] == [(t, o) for t, o, _, _ in labels]
        for p, (_, target, colour, shape) in zip(phrases, labels, strict=True):
            seen.add(p.kind)
            says_colour = p.kind in ("colour+shape", "colour", "group")
            says_shape = p.kind in ("colour+shape", "shape", "group")
            want_colour = COLOUR_NAMES.index(look[target].colour) if says_colour else N_COLOURS
            want_shape = (
                SHAPE_CLASSES.index(look[target].shape) if says_shape else len(SHAPE_CLASSES)
            )
            assert (colour, shape) == (want_colour, want_shape), p
            if colour < N_COLOURS:  # the phrase's words say it, not only its kind
                assert any(w in p.text for w in COLOUR_WORDS[COLOUR_NAMES[colour]][0]), p
            if shape < SHAPE_CLASSES.index("group"):
                assert any(w in p.text for w in SHAPE_WORDS[SHAPE_CLASSES[shape]][0]), p
    assert {"colour+shape", "colour", "part"} <= seen


def test_polar_spectrum_does_not_turn_with_the_shape_and_tells_a_star_by_its_points() -> None:
    import cv2

    from samkit.text.grounding import polar_spectrum

    masks = np.zeros((3, 96, 96), np.uint8)
    cv2.circle(masks[0], (48, 48), 40, 1, -1)
    angles = np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 44, 20)
    for i, turn in ((1, 0.0), (2, 0.4)):  # the same five-pointed star, turned by 0.4 rad
        star = np.stack([48 + radii * np.sin(angles + turn), 48 - radii * np.cos(angles + turn)], 1)
        cv2.fillPoly(masks[i], [star.round().astype(np.int32)], 1)
    _, crops = region_features(np.zeros((96, 96, 3), np.uint8), masks.astype(bool), np.ones(3))
    spectrum = polar_spectrum(crops)
    harmonics = spectrum[:, :16]  # of each ray's extent, over the mean: the 1st is index 0
    assert harmonics[0].max() < 0.05  # a disc reaches equally far every way
    assert harmonics[1, 4] > 0.1 and harmonics[1, 4] == harmonics[1].max()  # five points
    assert torch.allclose(spectrum[1], spectrum[2], atol=0.03)
    assert not torch.allclose(spectrum[0], spectrum[1], atol=0.03)


def test_silhouettes_follow_the_pixels_colours_where_the_mask_is_rough() -> None:
    import cv2

    from samkit.text.grounding import silhouettes

    image = np.full((40, 40, 3), 128, np.uint8)
    disc = np.zeros((40, 40), np.uint8)
    cv2.circle(disc, (20, 20), 12, 1, -1)
    image[disc.astype(bool)] = (200, 30, 30)
    square = np.zeros((40, 40), bool)  # a rough proposal: the disc's bounding square
    ys, xs = np.nonzero(disc)
    square[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    _, rough = region_features(image, square[None], np.ones(1))
    _, exact = region_features(image, disc.astype(bool)[None], np.ones(1))

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a & b).sum() / (a | b).sum())

    truth = exact[0, 0] > 0.5
    assert iou(rough[0, 0] > 0.5, truth) < 0.85  # the square's corners
    soft, sharp = silhouettes(rough)[0] > 0.5
    assert iou(soft, truth) > 0.9  # all but a few edge pixels, blended by the crop's resizing
    assert iou(sharp, truth) < 0.5  # only the pixels coloured like the mask's blend
    for kind in silhouettes(exact)[0] > 0.5:  # a close mask: both are the disc
        assert iou(kind, truth) > 0.9
    # stripes, two rows red to one blue: the colour is the red, not the purple blend
    stripes = np.zeros((24, 24, 3), np.uint8)
    stripes[np.arange(24) % 3 < 2] = (255, 0, 0)
    stripes[np.arange(24) % 3 == 2] = (0, 0, 255)
    _, crops = region_features(stripes, np.ones((1, 24, 24), bool), np.ones(1))
    both = silhouettes(crops)[0]
    red = torch.from_numpy(np.arange(24) % 3 < 2)
    for kind in both:
        assert kind[red].min() > 0.99 and kind[~red].max() < 0.01


def test_shape_inputs_turn_with_the_crops_and_their_spectra_do_not() -> None:
    """Training works the inputs out once and turns them (`train.grounder._matching_loss`):
    the same as working them out from turned crops."""
    from samkit.text.grounding import shape_inputs

    scene = make_scene(3, 0, 128)
    masks = scene.masks
    _, crops = region_features(scene.image, masks, np.ones(len(masks)))
    once = shape_inputs(crops)
    for turns in range(4):
        for flip in (False, True):
            turned = torch.rot90(crops, turns, (2, 3))
            pictures = torch.rot90(once.pictures, turns, (2, 3))
            if flip:
                turned, pictures = turned.flip(3), pictures.flip(3)
            again = shape_inputs(turned)
            assert torch.allclose(again.pictures, pictures, atol=1e-5)
            assert torch.allclose(again.spectra, once.spectra, atol=1e-4)
    assert once.pictures.shape[1] == 6 and once.spectra.shape[1] == 2

"""Text prompts from users' datasets: category names as phrases (COCO categories, SA-1B label
fields), kept aligned with the masks training keeps, and `samkit finetune --text`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor, load
from samkit.checkpoints import read_metadata, read_state_dict
from samkit.cli import main
from samkit.data import CocoInstances, SA1BFolder
from samkit.data.folders import category_name
from samkit.io.sa1b import write_sa1b
from samkit.loading import TEXT_HEAD_PREFIX
from samkit.train import TrainConfig
from samkit.train.config import finetune_config
from samkit.train.sources import count_phrases, fit_sample, mask_phrases
from samkit.train.step import step_generator
from samkit.train.text import NONE, choose_text, object_crop
from samkit.train.trainer import new_model

CATEGORIES = [
    {"id": 1, "name": "dog"},
    {"id": 2, "name": "cat"},
    {"id": 3, "name": "traffic_light"},
]
H, W = 96, 128
DOG = (1, (10, 10, 50, 40), 0)  # (category_id, (x0, y0, x1, y1), iscrowd)
TINY_DOG = (1, (120, 90, 123, 93), 0)  # fit to 64 px it is under MIN_MASK_AREA: dropped
CAT_A, CAT_B = (2, (60, 10, 100, 40), 0), (2, (60, 50, 100, 90), 0)
LIGHT = (3, (10, 50, 50, 90), 0)
TINY_LIGHT = (3, (0, 0, 3, 3), 0)
CAT_CROWD = (2, (60, 50, 100, 90), 1)
UNKNOWN = (9, (10, 50, 50, 90), 0)  # a category_id the file's categories do not name

Annotation = tuple[int, tuple[int, int, int, int], int]


def write_coco(root: Path, images: list[list[Annotation]], categories: Any = CATEGORIES) -> Path:
    """root/instances.json and root/imgs/img{i}.png (96x128, noise): image i holds the given
    annotations, each a box polygon painted in a colour of its own, in the order given."""
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
    for i, anns in enumerate(images):
        pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        for category_id, (x0, y0, x1, y1), crowd in anns:
            pixels[y0:y1, x0:x1] = rng.integers(0, 255, 3)
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": i + 1, "category_id": category_id,
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "iscrowd": crowd,
                "area": (x1 - x0) * (y1 - y0), "bbox": [x0, y0, x1 - x0, y1 - y0],
            })  # fmt: skip
        Image.fromarray(pixels).save(root / "imgs" / f"img{i}.png")
        doc["images"].append({"id": i + 1, "file_name": f"img{i}.png", "width": W, "height": H})
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json"


def box_mask(box: tuple[int, int, int, int], scale: float, size: int) -> np.ndarray:
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_coco_category_names_become_phrases_of_the_masks_they_name_alone(
    tmp_path: Path,
) -> None:
    path = write_coco(
        tmp_path,
        [
            [TINY_LIGHT, DOG, CAT_A, CAT_B, UNKNOWN],
            [LIGHT, DOG, TINY_DOG, CAT_CROWD],
        ],
    )
    data = CocoInstances(path, tmp_path / "imgs")
    first, second = data[0], data[1]
    names = [a.get("category_name") for a in first.attributes]
    assert names == ["traffic_light", "dog", "cat", "cat", None]
    assert data.attributes(1) == second.attributes  # the same fields, without the image

    fitted = fit_sample(first, 64)  # half size: the tiny traffic light is dropped
    assert len(fitted.masks) == 4 and len(fitted.phrases) == 4
    # one dog: named; two cats: "the cat" is ambiguous; an unnamed category: no phrase
    assert fitted.phrases == (("dog", "the dog"), (), (), ())
    assert np.array_equal(fitted.masks[0], box_mask(DOG[1], 0.5, 64))  # aligned with its mask
    assert np.array_equal(fitted.masks[3], box_mask(UNKNOWN[1], 0.5, 64))

    fitted = fit_sample(second, 64)  # the tiny dog is dropped, but still makes "dog" ambiguous
    assert fitted.phrases == (("traffic light", "the traffic light"), (), ())
    assert np.array_equal(fitted.masks[0], box_mask(LIGHT[1], 0.5, 64))
    assert np.array_equal(fitted.masks[1], box_mask(DOG[1], 0.5, 64))
    assert mask_phrases(second.attributes)[3] == ()  # a crowd region is many cats

    # over the file: 8 annotations with a known category, 3 of them named alone (the first
    # image's tiny traffic light and dog, the second's traffic light)
    assert count_phrases(data) == (8, 3)
    assert count_phrases([first]) == (4, 2)  # any SampleSource, e.g. a list of samples


def test_sa1b_annotations_name_their_category_with_a_label_field(
    tmp_path: Path, mask_records: Any
) -> None:
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[0, 5:30, 5:30] = masks[1, 35:60, 5:30] = masks[2, 5:60, 35:60] = True
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "sa_1.png")
    image = {"image_id": 1, "width": 64, "height": 64, "file_name": "sa_1.png"}
    write_sa1b(tmp_path / "sa_1.json", mask_records(masks), image=image)
    doc = json.loads((tmp_path / "sa_1.json").read_text())
    doc["annotations"][0]["label"] = "dog"
    doc["annotations"][1]["category"] = 7  # an id, not a name
    doc["annotations"][2]["category_name"] = "red_car"
    (tmp_path / "sa_1.json").write_text(json.dumps(doc))

    sample = SA1BFolder(tmp_path)[0]
    assert [category_name(a) for a in sample.attributes] == ["dog", None, "red car"]
    fitted = fit_sample(sample, 64)
    assert fitted.phrases == (("dog", "the dog"), (), ("red car", "the red car"))


def test_training_prompts_only_the_named_masks_with_their_phrases(tmp_path: Path) -> None:
    path = write_coco(tmp_path, [[DOG, CAT_A, CAT_B, LIGHT]])
    fitted = fit_sample(CocoInstances(path, tmp_path / "imgs")[0], 128)
    config = TrainConfig(model="samkit_tiny", text_encoder="minilm", text_prob=1.0)
    text = choose_text(fitted, [0, 1, 2, 3], step_generator(0, 0), config)
    assert [m != NONE for m in text.mode.tolist()] == [True, False, False, True]
    assert (text.vectors[1:3] == 0).all()
    assert torch.allclose(text.vectors[[0, 3]].norm(dim=1), torch.ones(2))


def test_finetune_text_gives_the_model_a_trained_text_head(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    named = [[DOG, CAT_A, CAT_B, LIGHT], [DOG, CAT_A], [LIGHT, CAT_A, CAT_B]]
    path = write_coco(tmp_path / "data", named)
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_tiny", "--coco", str(path)]
    args += ["--images", str(tmp_path / "data" / "imgs"), "--out", str(run), "--device", "cpu"]
    args += ["--steps", "2", "--threads", "1", "--freeze-encoder", "--precision", "fp32"]
    assert main([*args, "--text", "--text-prob", "1"]) == 0

    weights = read_state_dict(run / "model.safetensors")
    head = {k: v for k, v in weights.items() if k.startswith(TEXT_HEAD_PREFIX)}
    assert head and head[TEXT_HEAD_PREFIX + "layers.0.weight"].shape[1] == 384  # MiniLM's width
    assert read_metadata(run / "model.safetensors")["samkit_text_encoder"] == "minilm"
    # the head the run started from (fresh, from the run's seed) was trained: text prompts of
    # the category names reached it (a head no step used keeps its weights exactly)
    config = finetune_config("samkit_tiny", 256, steps=2, lr=1e-4, freeze_image_encoder=True,
                             text_encoder="minilm", text_prob=1.0)  # fmt: skip
    start = new_model(config, load("samkit_tiny").state_dict()).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in head.items())
    report = json.loads((run / "finetune_report.json").read_text())
    assert report["text_named_annotations"] == 5  # a dog and a light, a dog and a cat, a light

    model = load(run / "model.safetensors")
    assert model.text_encoder == "minilm"
    predictor = SamPredictor(model)
    predictor.set_image(np.asarray(Image.open(tmp_path / "data" / "imgs" / "img0.png")))
    masks, scores, _ = predictor.predict(text="the dog", multimask_output=False)
    assert masks.shape == (1, H, W) and scores.shape == (1,)


def test_finetune_text_needs_category_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_sa1b_scenes: Any
) -> None:
    run = tmp_path / "run"
    base = ["finetune", "--model", "samkit_tiny", "--out", str(run), "--steps", "2"]
    scenes = write_sa1b_scenes(tmp_path / "sa1b", seed=4, n=2, size=64)  # no category fields
    assert main([*base, "--sa1b", str(scenes), "--text"]) == 1
    assert "has a category name" in capsys.readouterr().err

    nameless = write_coco(tmp_path / "nameless", [[DOG, CAT_A], [DOG]], categories=[])
    coco = ["--coco", str(nameless), "--images", str(tmp_path / "nameless" / "imgs")]
    assert main([*base, *coco, "--text"]) == 1
    assert "has a category name" in capsys.readouterr().err

    crowded = write_coco(tmp_path / "crowded", [[CAT_A, CAT_B], [DOG, TINY_DOG]])
    coco = ["--coco", str(crowded), "--images", str(tmp_path / "crowded" / "imgs")]
    assert main([*base, *coco, "--text"]) == 1
    assert "4 annotations" in (err := capsys.readouterr().err) and "several instances" in err
    assert main([*base, *coco, "--text-prob", "0.5"]) == 1
    assert "needs --text" in capsys.readouterr().err

    named = write_coco(tmp_path / "named", [[DOG, CAT_A], [DOG]])
    coco = ["--coco", str(named), "--images", str(tmp_path / "named" / "imgs")]
    assert main([*base, *coco, "--text", "bert"]) == 1
    assert "unknown text encoder 'bert'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, *coco, "--text", "--text-prob", "1.5"])
    assert "expected a number from 0 to 1" in capsys.readouterr().err
    assert not run.exists()  # every check came before any work


def test_crop_prompts_need_clip_and_crop_around_the_mask(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='needs a "clip:<model>'):
        TrainConfig(model="samkit_tiny", text_encoder="minilm", text_prob=1.0,
                    text_from_crops=True)  # fmt: skip
    image = np.arange(80 * 100 * 3, dtype=np.uint8).reshape(80, 100, 3)
    mask = np.zeros((128, 128), bool)  # padded beyond the image, as FittedSample pads
    mask[10:30, 20:60] = True  # 20 x 40: widened by 2 and 4 px on each side
    np.testing.assert_array_equal(object_crop(image, mask), image[8:32, 16:64])
    mask[:] = False
    mask[0:10, 90:100] = True  # at the corner: the margin stops at the image's edge
    np.testing.assert_array_equal(object_crop(image, mask), image[0:11, 89:100])
    with pytest.raises(ValueError, match="an empty mask has no crop"):
        object_crop(image, np.zeros((80, 100), bool))

    path = write_coco(tmp_path / "data", [[DOG, CAT_A]])
    run = tmp_path / "run"
    args = ["finetune", "--model", "samkit_tiny", "--coco", str(path), "--images"]
    args += [str(tmp_path / "data" / "imgs"), "--out", str(run), "--steps", "2"]
    assert main([*args, "--text", "--text-from-crops"]) == 1  # MiniLM has no image tower
    assert main([*args, "--text-from-crops"]) == 1
    assert not run.exists()

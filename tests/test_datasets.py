"""SA-1B folder and COCO instances datasets, on files written from synthetic scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samkit.data import CocoInstances, SA1BFolder, make_scene
from samkit.io.coco import CocoWriter
from samkit.io.sa1b import write_sa1b


@pytest.fixture(scope="module")
def scenes() -> list:
    return [make_scene(5, i, size=64) for i in range(3)]


def test_sa1b_folder_round_trip(tmp_path: Path, scenes: list, mask_records: Any) -> None:
    for i, scene in enumerate(scenes):
        sub = tmp_path / ("x" if i else "y")
        sub.mkdir(exist_ok=True)
        Image.fromarray(scene.image).save(sub / f"sa_{i}.png")
        write_sa1b(
            sub / f"sa_{i}.json",
            mask_records(scene.masks),
            image={"image_id": i, "width": 64, "height": 64, "file_name": f"sa_{i}.png"},
        )
    Image.fromarray(scenes[0].image).save(tmp_path / "no_json.png")  # not a sample
    data = SA1BFolder(tmp_path)
    assert len(data) == 3
    by_name = {data[i].path.name: data[i] for i in range(3)}
    for i, scene in enumerate(scenes):
        sample = by_name[f"sa_{i}.png"]
        assert np.array_equal(sample.image, scene.image)
        assert np.array_equal(sample.masks, scene.masks)
        assert sample.ids == list(range(len(scene.masks)))


def test_sa1b_size_mismatch_is_reported(tmp_path: Path, scenes: list, mask_records: Any) -> None:
    Image.fromarray(scenes[0].image[:32]).save(tmp_path / "a.png")
    write_sa1b(
        tmp_path / "a.json",
        mask_records(scenes[0].masks),
        image={"image_id": 1, "width": 64, "height": 64, "file_name": "a.png"},
    )
    with pytest.raises(ValueError, match="says 64x64"):
        SA1BFolder(tmp_path)[0]
    with pytest.raises(FileNotFoundError):
        SA1BFolder(tmp_path / "missing")


def test_coco_instances_round_trip(tmp_path: Path, scenes: list, mask_records: Any) -> None:
    writer = CocoWriter(segmentation="polygon")
    for i, scene in enumerate(scenes):
        Image.fromarray(scene.image).save(tmp_path / f"{i}.png")
        writer.add_image(f"{i}.png", 64, 64, mask_records(scene.masks))
    writer.add_image("empty.png", 64, 64, [])
    Image.fromarray(scenes[0].image).save(tmp_path / "empty.png")
    writer.write(tmp_path / "instances.json")
    data = CocoInstances(tmp_path / "instances.json", tmp_path)
    assert len(data) == 4 and len(data[3].masks) == 0
    assert len(CocoInstances(tmp_path / "instances.json", tmp_path, skip_empty=True)) == 3
    for i, scene in enumerate(scenes):
        assert np.array_equal(data[i].masks, scene.masks)
    payload = json.loads((tmp_path / "instances.json").read_text())
    assert any(isinstance(a["segmentation"], list) for a in payload["annotations"])

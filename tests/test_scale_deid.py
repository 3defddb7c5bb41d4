"""De-identification on images whose answer is known: scikit-image's astronaut photo (one
frontal face), a drawn Russian-format licence plate, and images with neither."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samkit.scale.deid import (
    Detection,
    blur_boxes,
    deidentify,
    parse_detectors,
    shipped_detector,
)

FACE = (177, 66, 95, 95)  # astronaut(): Eileen Collins' face, (X, Y, W, H), checked by eye


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def drawn_plate(width: int, number: str = "A123BC", region: str = "77") -> np.ndarray:
    """A white Russian-format plate (520x112 proportions): black border, number, region."""
    h = round(width * 112 / 520)
    plate = np.full((h, width, 3), 255, np.uint8)
    line = max(1, width // 100)
    cv2.rectangle(plate, (1, 1), (width - 2, h - 2), (0, 0, 0), line)
    scale = h / 40
    cv2.putText(
        plate,
        number,
        (round(width * 0.05), round(h * 0.8)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        max(1, int(scale * 2.5)),
    )
    cv2.line(plate, (round(width * 0.75), 0), (round(width * 0.75), h), (0, 0, 0), line)
    cv2.putText(
        plate,
        region,
        (round(width * 0.78), round(h * 0.6)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale * 0.7,
        (0, 0, 0),
        max(1, int(scale * 2)),
    )
    return plate


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_face_found_in_astronaut() -> None:
    found = shipped_detector("face").detect(astronaut())
    assert len(found) == 1 and found[0].kind == "face"
    assert iou(found[0].bbox, FACE) > 0.7


@pytest.mark.parametrize("width", [80, 140, 200])
def test_drawn_plate_found(width: int) -> None:
    scene = np.full((240, 320, 3), 90, np.uint8)
    plate = drawn_plate(width)
    scene[100 : 100 + plate.shape[0], 50 : 50 + width] = plate
    found = shipped_detector("plate").detect(scene)
    assert len(found) == 1 and found[0].kind == "plate"
    truth = (50, 100, width, plate.shape[0])
    # The cascade's box is taller than the plate and a little off sideways: it must cover
    # most of the plate and not be much larger.
    x, y, w, h = found[0].bbox
    covered = max(0, min(x + w, 50 + width) - max(x, 50)) * max(
        0, min(y + h, 100 + truth[3]) - max(y, 100)
    )
    assert covered >= 0.8 * truth[2] * truth[3] and w * h <= 3 * truth[2] * truth[3]


def test_nothing_found_where_there_is_nothing() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((200, 300, 3), 128, np.uint8)
    noise = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    detectors = parse_detectors("face,plate")
    for image in (flat, noise):
        blurred, found = deidentify(image, detectors)
        assert found == [] and blurred is image


def test_blur_changes_only_the_boxes_and_hides_them() -> None:
    image = astronaut()
    box = Detection("face", FACE)
    out = blur_boxes(image, [box], margin=0.0)
    x, y, w, h = FACE
    inside = np.zeros(image.shape[:2], bool)
    inside[y : y + h, x : x + w] = True
    assert np.array_equal(out[~inside], image[~inside])
    assert not np.array_equal(out[inside], image[inside])
    # The detail inside is gone: the blurred face has far less local contrast than before.
    assert np.abs(np.diff(out[inside].reshape(h, w, 3).astype(int), axis=1)).mean() < 0.25 * (
        np.abs(np.diff(image[y : y + h, x : x + w].astype(int), axis=1)).mean()
    )
    assert shipped_detector("face").detect(out) == []  # and the detector no longer sees it


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown detector 'cat'"):
        parse_detectors("face,cat")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        shipped_detector("face").detect(np.zeros((10, 10), np.uint8))


def test_deid_command(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut()).save(tmp_path / "in" / "astro.jpg")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "in" / "plain.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    cmd = [sys.executable, "-m", "samkit.cli", "deid", str(tmp_path / "in")]
    cmd += ["--out", str(tmp_path / "out"), "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "2 done, 0 skipped" in r.stdout and "1 failed" in r.stdout
    assert "broken.png" in r.stderr
    record = json.loads((tmp_path / "out" / "astro.deid.json").read_text())
    assert [d["kind"] for d in record["detections"]] == ["face"]
    assert iou(tuple(record["detections"][0]["bbox"]), FACE) > 0.7
    assert Image.open(tmp_path / "out" / "astro.jpg").size == (512, 512)
    plain = json.loads((tmp_path / "out" / "plain.deid.json").read_text())
    assert plain["detections"] == []
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "0 done, 2 skipped" in r.stdout  # resumable

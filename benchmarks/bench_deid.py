"""Recall and false positives of the shipped de-identification detectors on labelled images
that can be built here honestly (no data set download):

faces  - scikit-image's `lfw_subset`: 100 LFW face crops and 100 non-face crops (25x25 grey),
         each enlarged 4x (100x100) onto the centre of a 200x200 mid-grey canvas. A face is
         found when a detection's centre lies in the pasted crop; any detection on a non-face
         canvas is a false positive.
photos - scikit-image's photos: astronaut (1 frontal face), and 10 photos with no human face
         (coffee, chelsea, rocket, coins, horse, camera is excluded: its face is in profile).
plates - Russian-format plates drawn with OpenCV's Hershey font (random letters/digits,
         60-240 px wide) pasted at random places on 320x240 crops of scikit-image photos with
         no plate; found when a detection covers half the plate. The same crops without a
         plate give the false positives.

    OMP_NUM_THREADS=1 python benchmarks/bench_deid.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_scale_deid import drawn_plate

from samkit.scale.deid import Detection, shipped_detector

NO_FACE = ["coffee", "chelsea", "rocket", "coins", "horse", "brick", "grass", "gravel", "moon"]
NO_FACE += ["hubble_deep_field"]
LETTERS = "ABEKMHOPCTYX"
ASTRONAUT_FACE = (177, 66, 95, 95)  # (X, Y, W, H), as in tests/test_scale_deid.py


def rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def lfw_canvas(crop: np.ndarray) -> np.ndarray:
    canvas = np.full((200, 200), 128, np.uint8)
    big = cv2.resize((crop * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
    canvas[50:150, 50:150] = big
    return rgb(canvas)


def centre_in(det: Detection, box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = det.bbox
    cx, cy = x + w / 2, y + h / 2
    return box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3]


def covered(det: Detection, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = det.bbox
    iw = max(0, min(x + w, box[0] + box[2]) - max(x, box[0]))
    ih = max(0, min(y + h, box[1] + box[3]) - max(y, box[1]))
    return iw * ih / (box[2] * box[3])


def faces() -> dict[str, object]:
    from skimage import data

    face = shipped_detector("face")
    lfw = data.lfw_subset()
    found = sum(
        any(centre_in(d, (50, 50, 100, 100)) for d in face.detect(lfw_canvas(c))) for c in lfw[:100]
    )
    false_lfw = sum(len(face.detect(lfw_canvas(c))) for c in lfw[100:])
    astronaut = face.detect(rgb(data.astronaut()))
    photos_fp = {name: len(face.detect(rgb(getattr(data, name)()))) for name in NO_FACE}
    return {
        "lfw_faces_found": f"{found}/100",
        "lfw_nonface_false_positives": f"{false_lfw} on 100 crops",
        "astronaut_faces_found": f"{int(any(centre_in(d, ASTRONAUT_FACE) for d in astronaut))}/1",
        "astronaut_false_positives": sum(not centre_in(d, ASTRONAUT_FACE) for d in astronaut),
        "photos_without_faces_false_positives": photos_fp,
    }


def plates(n: int = 100, seed: int = 0) -> dict[str, object]:
    from skimage import data

    rng = np.random.default_rng(seed)
    plate = shipped_detector("plate")
    backgrounds = [rgb(getattr(data, name)()) for name in NO_FACE]
    found, false_with, false_without = 0, 0, 0
    by_width: dict[str, list[int]] = {}
    for i in range(n):
        bg = backgrounds[i % len(backgrounds)]
        y0 = rng.integers(0, bg.shape[0] - 240 + 1)
        x0 = rng.integers(0, bg.shape[1] - 320 + 1)
        scene = (
            cv2.resize(bg, (320, 240))
            if min(bg.shape[:2]) < 240
            else bg[y0 : y0 + 240, x0 : x0 + 320].copy()
        )
        false_without += len(plate.detect(scene))
        number = "".join(
            [
                rng.choice(list(LETTERS)),
                *map(str, rng.integers(0, 10, 3)),
                *rng.choice(list(LETTERS), 2),
            ]
        )
        width = int(rng.integers(60, 241))
        drawn = drawn_plate(width, number, str(rng.integers(10, 200)))
        px = int(rng.integers(0, 320 - width + 1))
        py = int(rng.integers(0, 240 - drawn.shape[0] + 1))
        scene[py : py + drawn.shape[0], px : px + width] = drawn
        truth = (px, py, width, drawn.shape[0])
        dets = plate.detect(scene)
        hit = any(covered(d, truth) >= 0.5 for d in dets)
        found += hit
        false_with += sum(covered(d, truth) < 0.5 for d in dets)
        by_width.setdefault(f"{width // 60 * 60}-{width // 60 * 60 + 59}px", []).append(int(hit))
    return {
        "plates_found": f"{found}/{n}",
        "recall_by_width": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_width.items())},
        "false_positives_with_plate": f"{false_with} on {n} scenes",
        "false_positives_without_plate": f"{false_without} on {n} scenes",
    }


if __name__ == "__main__":
    print(json.dumps({"cv2": cv2.__version__, "faces": faces(), "plates": plates()}, indent=1))

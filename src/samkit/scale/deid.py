"""De-identification: find faces and licence plates and blur them before anything else sees
the image, as SA-1B's images were.

A detector is anything with `detect(image) -> list[Detection]` (the `Detector` protocol), so a
better one plugs in without touching the pipeline. The shipped ones are OpenCV's Haar cascades
(`HaarDetector`), which come inside the `opencv-python-headless` wheel (4.x; OpenCV 5 dropped
`CascadeClassifier`): frontal faces and Russian-format licence plates. They are fast and need
no download, and they miss a lot (profile faces, small faces, other plate formats): see
docs/scale.md for their measured recall and false positives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

CELLS = 4  # a blurred box keeps at most this many cells of detail along its long side

# name -> (cascade file in cv2.data.haarcascades, min size (W, H), min neighbours); the
# plate cascade gives fewer overlapping hits, so it keeps boxes with 3 (see docs/scale.md).
SHIPPED = {
    "face": ("haarcascade_frontalface_default.xml", (24, 24), 5),
    "plate": ("haarcascade_russian_plate_number.xml", (40, 13), 3),
}


@dataclass(frozen=True)
class Detection:
    kind: str  # what was found, e.g. "face" or "plate"
    bbox: tuple[int, int, int, int]  # (X, Y, W, H) pixels in the image

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "bbox": list(self.bbox)}


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Boxes to blur in an HxWx3 uint8 RGB image."""
        ...


class HaarDetector:
    """One OpenCV cascade run over the grey image at several scales.

    cascade: path to a cascade XML file (Haar or LBP, OpenCV's format).
    scale_factor: step between the scales searched (> 1; smaller finds more, slower).
    min_neighbors: overlapping hits needed to keep a box (higher: fewer false positives).
    min_size: smallest box searched, (W, H) pixels.
    """

    def __init__(
        self,
        *,
        kind: str,
        cascade: str | os.PathLike[str],
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] = (24, 24),
    ) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 removed it); "
                "install opencv-python-headless<5 or pass another detector"
            )
        self.classifier = cv2.CascadeClassifier(os.fspath(cascade))
        if self.classifier.empty():
            raise ValueError(f"could not load the cascade {os.fspath(cascade)!r}")
        if scale_factor <= 1:
            raise ValueError(f"scale_factor must be > 1; got {scale_factor}")
        self.kind = kind
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2GRAY))
        boxes = self.classifier.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=self.min_size,
        )
        return [Detection(self.kind, (int(x), int(y), int(w), int(h))) for x, y, w, h in boxes]


def shipped_detector(name: str, **options: Any) -> HaarDetector:
    """A detector from OpenCV's wheel by name: "face" or "plate"."""
    import cv2

    if name not in SHIPPED:
        raise ValueError(f"unknown detector {name!r}; shipped: {', '.join(SHIPPED)}")
    filename, min_size, min_neighbors = SHIPPED[name]
    options.setdefault("min_size", min_size)
    options.setdefault("min_neighbors", min_neighbors)
    folder = cv2.data.haarcascades  # type: ignore[attr-defined]
    return HaarDetector(kind=name, cascade=os.path.join(folder, filename), **options)


def detect_all(image: np.ndarray, detectors: Sequence[Detector]) -> list[Detection]:
    return [d for detector in detectors for d in detector.detect(image)]


def blur_boxes(
    image: np.ndarray, detections: Sequence[Detection], *, margin: float = 0.1
) -> np.ndarray:
    """A copy of `image` with each box (grown by `margin` of its size on every side) blurred
    so strongly that nothing inside is recognisable: the box is shrunk to CELLS px on its
    long side, enlarged back, then Gaussian-blurred. Pixels outside every box are unchanged."""
    import cv2

    out = _rgb(image).copy()
    h, w = out.shape[:2]
    for det in detections:
        x, y, bw, bh = det.bbox
        mx, my = round(bw * margin), round(bh * margin)
        x0, y0 = max(0, x - mx), max(0, y - my)
        x1, y1 = min(w, x + bw + mx), min(h, y + bh + my)
        if x1 <= x0 or y1 <= y0:
            continue
        region = out[y0:y1, x0:x1]
        scale = CELLS / max(region.shape[:2])
        small = cv2.resize(
            region,
            (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
        coarse = cv2.resize(small, region.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        sigma = max(region.shape[:2]) / 16
        out[y0:y1, x0:x1] = cv2.GaussianBlur(coarse, (0, 0), sigmaX=sigma)
    return out


def deidentify(
    image: np.ndarray, detectors: Sequence[Detector]
) -> tuple[np.ndarray, list[Detection]]:
    """Detect with every detector and blur what they found: (blurred copy, detections)."""
    found = detect_all(image, detectors)
    return (blur_boxes(image, found) if found else image), found


def detections_json(detections: Sequence[Detection]) -> list[dict[str, Any]]:
    return [d.as_json() for d in detections]


def parse_detectors(names: str) -> list[Detector]:
    """The shipped detectors named in a comma-separated list, e.g. "face,plate"."""
    return [shipped_detector(n.strip()) for n in names.split(",") if n.strip()]


def encode_image(image: np.ndarray, suffix: str) -> tuple[bytes, str]:
    """Encode an RGB image for writing: JPEG (quality 95) for .jpg/.jpeg, else PNG.
    Returns (bytes, the suffix written)."""
    import io

    from PIL import Image

    fmt, suffix = ("JPEG", suffix) if suffix.lower() in (".jpg", ".jpeg") else ("PNG", ".png")
    buffer = io.BytesIO()
    Image.fromarray(_rgb(image)).save(
        buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})
    )
    return buffer.getvalue(), suffix


def deid_files(
    items: Sequence[Any], out: str, detectors: Sequence[Detector], *, progress: bool = True
) -> tuple[int, int, list[tuple[str, str]]]:
    """Blur every `EngineItem` into the folder or URI `out`: the image under its key (JPEG
    stays JPEG, anything else becomes PNG) and `<key>.deid.json` with the boxes, written last.
    Items whose JSON exists are skipped. Returns (done, skipped, failures as (uri, error)).
    Raises `Interrupted` (SIGINT, SIGTERM) with the number of images done and left; the
    image in flight is discarded or, if its JSON was not written yet, done again next time."""
    import json

    from tqdm import tqdm

    from ..interrupt import Interrupted, images
    from ..io import load_image
    from .store import OutputStore, read_bytes

    store = OutputStore(out)
    existing = store.existing(".deid.json")
    done, skipped, failed = 0, 0, []
    bar = tqdm(items, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for item in bar:
            if item.key in existing:
                skipped += 1
                continue
            try:
                image = load_image(read_bytes(item.uri), name=item.uri)
                blurred, found = deidentify(image, detectors)
                name = item.uri.rsplit("/", 1)[-1]
                data, suffix = encode_image(blurred, os.path.splitext(name)[1])
                store.write_bytes(item.key + suffix, data)
                record = {"file_name": os.path.basename(item.key) + suffix, "source": item.uri}
                record.update(width=image.shape[1], height=image.shape[0])
                record["detections"] = detections_json(found)
                store.write_bytes(item.key + ".deid.json", json.dumps(record).encode())
                done += 1
            except Exception as err:  # one bad image must not stop the run
                failed.append((item.uri, f"{type(err).__name__}: {err}"))
    except Interrupted as stop:
        bar.close()
        finished = len({item.key for item in items} & store.existing(".deid.json"))
        left = len(items) - finished
        raise Interrupted(stop.signum, f"{images(finished)} done, {left} left") from None
    return done, skipped, failed


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be HxWx3 uint8 RGB; got shape {image.shape} dtype {image.dtype}"
        )
    return np.ascontiguousarray(image)


__all__ = [
    "Detection",
    "Detector",
    "HaarDetector",
    "blur_boxes",
    "deid_files",
    "deidentify",
    "detect_all",
    "detections_json",
    "encode_image",
    "parse_detectors",
    "shipped_detector",
]

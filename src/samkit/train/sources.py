"""Where training images come from: the synthetic scene stream, or samples on disk (an SA-1B
folder or a COCO file) fitted to the model's square input.

A source maps a global image number (step * batch + position) to a `Scene`-like object with
`image` (h, w, 3) uint8 whose longest side is S, the model's input size (synthetic scenes are
S x S), and `masks` (N, S, S) bool, padded at the bottom and right as the model pads its input
(`Sam.preprocess`, after normalising, exactly as for the predictor). Image numbers
never repeat within a run, so the same number always means the same image: resuming and
multi-process training see exactly the images a single process would have seen.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from ..data import Scene, make_scene
from ..data.folders import Sample, SampleSource, annotation_attributes, category_name
from ..transforms import ResizeLongestSide

MIN_MASK_AREA = 16  # px at the model's size; smaller masks are no useful training target


class TrainSource(Protocol):
    def __call__(self, index: int) -> Scene | FittedSample: ...


@dataclass(frozen=True)
class FittedSample:
    image: np.ndarray  # (h, w, 3) uint8, resized as the predictor resizes: max(h, w) = S
    masks: np.ndarray  # (N, S, S) bool, resized alike and padded at the bottom and right
    # phrases naming each mask (e.g. its category name), for text prompts; () when none
    phrases: tuple[tuple[str, ...], ...] = ()


class SyntheticSource:
    """Image i is synthetic scene i of stream `seed`."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size

    def __call__(self, index: int) -> Scene:
        return make_scene(self.seed, index, self.size)


class DatasetSource:
    """Samples of a dataset in a fresh random order every epoch (seeded), each fitted to a
    `size` x `size` input as the predictor fits an image (`fit_sample`). Samples left with no
    usable mask are skipped."""

    def __init__(self, dataset: SampleSource, size: int, seed: int) -> None:
        if len(dataset) == 0:
            raise ValueError("the training dataset has no images")
        self.dataset, self.size, self.seed = dataset, size, seed

    def __call__(self, index: int) -> FittedSample:
        n = len(self.dataset)
        for attempt in range(n):
            epoch, position = divmod(index + attempt, n)
            order = _epoch_order(self.seed, epoch, n)
            fitted = fit_sample(self.dataset[int(order[position])], self.size)
            if len(fitted.masks):
                return fitted
        raise ValueError(f"no image of the dataset has a mask of at least {MIN_MASK_AREA} px")


@functools.lru_cache(maxsize=2)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of an epoch's samples: drawn once per epoch, not once per image."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class _Subset:
    def __init__(self, dataset: SampleSource, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[index]]


def split_holdout(
    dataset: SampleSource, fraction: float, seed: int
) -> tuple[SampleSource, SampleSource]:
    """(training, held-out) parts of `dataset`: a seeded random `fraction` of its samples,
    at least one, is held out; at least one is left to train on."""
    n = len(dataset)
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1; got {fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 images to hold some out; the dataset has {n}")
    order = np.random.default_rng([seed, n]).permutation(n).tolist()
    k = min(n - 1, max(1, round(fraction * n)))
    return _Subset(dataset, sorted(order[k:])), _Subset(dataset, sorted(order[:k]))


def mask_phrases(attributes: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The phrases naming each annotation of one image, from its category name
    (`data.folders.category_name`): ("dog", "the dog") when it is the image's only annotation
    of that category, else none. A text prompt must name one mask, and with two dogs in the
    image "the dog" names neither, so a category with several annotations in the image (a
    crowd region among them) gives none of them a phrase; a crowd region (`iscrowd`) gets none
    either, as it is many objects."""
    names = [category_name(a) for a in attributes]
    counts = Counter(name for name in names if name is not None)
    out: list[tuple[str, ...]] = []
    for a, name in zip(attributes, names, strict=True):
        if name is None or counts[name] > 1 or a.get("iscrowd"):
            out.append(())
        else:
            out.append((name, f"the {name}"))
    return out


def count_phrases(dataset: SampleSource) -> tuple[int, int]:
    """(annotations with a category name, annotations a phrase names: `mask_phrases`) over
    every sample of `dataset`, read from its annotation files alone."""
    named = phrased = 0
    for index in range(len(dataset)):
        attributes = annotation_attributes(dataset, index)
        named += sum(category_name(a) is not None for a in attributes)
        phrased += sum(bool(p) for p in mask_phrases(attributes))
    return named, phrased


def fit_sample(sample: Sample, size: int) -> FittedSample:
    """Resize `sample` so its longest side is `size` with the predictor's own resize
    (`ResizeLongestSide.apply_image`, so the encoder sees in training what it sees in use);
    masks are resized to the same (h, w) with nearest neighbours and padded to `size` squares,
    and those left smaller than MIN_MASK_AREA are dropped. The phrases of the masks kept
    (`mask_phrases` of the sample's attributes, which are read before any mask is dropped: a
    dog too small to train on still makes "the dog" ambiguous) come with them, one tuple each."""
    if sample.attributes and len(sample.attributes) != len(sample.masks):
        raise ValueError(
            f"{sample.path}: {len(sample.attributes)} annotations' attributes for "
            f"{len(sample.masks)} masks"
        )
    phrases = mask_phrases(sample.attributes) if sample.attributes else [()] * len(sample.masks)
    transform = ResizeLongestSide(size)
    image = transform.apply_image(np.ascontiguousarray(sample.image))
    nh, nw = image.shape[:2]
    masks = np.zeros((len(sample.masks), size, size), dtype=bool)
    for i, mask in enumerate(sample.masks):
        small = cv2.resize(mask.view(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
        masks[i, :nh, :nw] = small.astype(bool)
    keep = masks.reshape(len(masks), size * size).sum(axis=1) >= MIN_MASK_AREA
    kept = tuple(p for p, k in zip(phrases, keep.tolist(), strict=True) if k)
    return FittedSample(image, masks[keep], kept)

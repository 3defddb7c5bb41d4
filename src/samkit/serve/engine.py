"""The model side of the annotator: cached embeddings, prompt -> masks, segment everything.

One `Engine` is shared by every request thread. Each image gets its own `SamPredictor`
(a thin wrapper holding that image's embedding), kept in an LRU bounded in bytes, so two
images are prompted concurrently without sharing mutable state; a per-image lock makes
concurrent first requests on one image compute its embedding once.

Mask feedback (SAM's dense prompt): every prediction's low-res logits stay on the server
under a random token; the next request names `(token, index)` to feed candidate `index`
back as `mask_input`, as the official notebooks do between clicks. Tokens live in a second
byte-bounded LRU; an expired or foreign token is a ValueError the API turns into a 400.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..automatic import SamAutomaticMaskGenerator
from ..masks import calculate_stability_score
from ..modeling import Sam
from ..predictor import SamPredictor
from .cache import ByteLRU

ImageLoader = Callable[[], np.ndarray]  # returns the image as HxWx3 uint8 RGB


@dataclass(frozen=True)
class Prediction:
    """Candidate masks for one set of prompts, in the model's order."""

    token: str  # names these low-res logits for the next request's mask input
    masks: np.ndarray  # (C, H, W) bool, C = 3 with multimask output, else 1
    scores: np.ndarray  # (C,) float32 predicted IoU
    stability: np.ndarray  # (C,) float32 stability score (IoU of the mask at logit +/- 1)
    seconds: float  # time spent in the model (prompt encoder + decoder + upsampling)


def _embedding_bytes(predictor: SamPredictor) -> int:
    features = predictor.features
    return 0 if features is None else features.numel() * features.element_size()


class Engine:
    def __init__(
        self,
        model: Sam,
        *,
        cache_bytes: int = 1 << 30,
        logits_bytes: int = 128 << 20,
    ) -> None:
        """Serve `model` (eval mode, on its device).

        cache_bytes: image embeddings kept at most (the samkit_default embedding is 256 KiB,
          ViT-B/L/H's 4 MiB each). logits_bytes: low-res logits kept for mask feedback.
        """
        self.model = model.eval()
        self.embeddings: ByteLRU[str, SamPredictor] = ByteLRU(cache_bytes, _embedding_bytes)
        self.logits: ByteLRU[str, tuple[str, np.ndarray]] = ByteLRU(
            logits_bytes, lambda item: item[1].nbytes
        )
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._amg_lock = threading.Lock()  # one "segment everything" at a time: it is heavy

    def embed(self, key: str, load: ImageLoader) -> tuple[SamPredictor, bool]:
        """The predictor holding image `key`'s embedding, and whether it was cached."""
        predictor = self.embeddings.get(key)
        if predictor is not None:
            return predictor, True
        with self._lock_for(key):
            predictor = self.embeddings.get(key)  # another thread may have finished it
            if predictor is not None:
                return predictor, True
            predictor = SamPredictor(self.model)
            predictor.set_image(load())
            self.embeddings.put(key, predictor)
            return predictor, False

    def predict(
        self,
        key: str,
        load: ImageLoader,
        *,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_from: tuple[str, int] | None = None,
        multimask_output: bool = True,
    ) -> Prediction:
        """Masks for prompts on image `key` (embedded first when needed).

        point_coords: (N, 2) (X, Y) pixels; point_labels: (N,) 1 foreground, 0 background;
        box: (4,) XYXY pixels; mask_from: (token, index) of an earlier prediction on this
        image whose candidate `index` is fed back as the low-res mask prompt.
        Prompt errors (shapes, NaN, outside the image) raise ValueError.
        """
        predictor, _ = self.embed(key, load)
        mask_input = None if mask_from is None else self._previous_logits(key, *mask_from)
        start = time.perf_counter()
        logits, scores, low_res = predictor.predict(
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            multimask_output=multimask_output,
            return_logits=True,
        )
        threshold = self.model.mask_threshold
        stability = calculate_stability_score(torch.from_numpy(logits), threshold, 1.0)
        masks = logits > threshold
        seconds = time.perf_counter() - start
        token = secrets.token_urlsafe(12)
        self.logits.put(token, (key, low_res))
        return Prediction(token, masks, scores, stability.numpy().astype(np.float32), seconds)

    def everything(self, load: ImageLoader, **options: Any) -> list[dict[str, Any]]:
        """Automatic mask generation over the image; records with uncompressed RLE masks.

        options: `SamAutomaticMaskGenerator` arguments (points_per_side, pred_iou_thresh, ...).
        """
        generator = SamAutomaticMaskGenerator(self.model, output_mode="uncompressed_rle", **options)
        with self._amg_lock:
            return generator.generate(load())

    def _previous_logits(self, key: str, token: str, index: int) -> np.ndarray:
        item = self.logits.get(token)
        if item is None or item[0] != key:
            raise ValueError(
                f"mask_input token {token!r} is unknown or expired for this image; "
                "send the prompts without mask_input"
            )
        low_res = item[1]
        if not 0 <= index < len(low_res):
            raise ValueError(
                f"mask_input index must be in 0..{len(low_res) - 1} (one of that prediction's "
                f"candidates); got {index}"
            )
        return low_res[index : index + 1]

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

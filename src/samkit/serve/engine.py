"""The model side of the annotator: cached embeddings, prompt -> masks, segment everything.

One `Engine` is shared by every request thread. Each image's `ImageEmbedding` is kept in an
LRU bounded in bytes, counting every tensor it keeps (`embedding_cache.embedding_bytes`: the
embedding, its positional encoding and the decoder's prepared keys and projections, about 10x
the embedding alone); every request wraps it in its own `SamPredictor` (a thin wrapper), so
requests are prompted concurrently without sharing mutable state, and "segment everything"
reuses the embedding a click computed. A per-image lock, held only while that image is being
embedded, makes concurrent first requests on one image compute its embedding once.

Clicks come before "segment everything": `submit_everything` queues automatic mask
generation on the engine's one AMG thread, so queued AMG requests hold no request thread
and a predict never waits behind them (it runs beside the one AMG job running, if any).
A job given an id reports its progress (grid points done of all) while it runs, and
`cancel` stops it before its next batch of points (or before it starts, if queued): its
future then raises `Cancelled`.

Mask feedback (SAM's dense prompt): every prediction's low-res logits stay on the server
under a random token; the next request names `(token, index)` to feed candidate `index`
back as `mask_input`, as the official notebooks do between clicks. Tokens live in a second
byte-bounded LRU; an expired or foreign token is a ValueError the API turns into a 400.
A mask edited on the page (brush, eraser) comes back as a whole-image binary mask instead:
`mask_prompt` puts it in the model's frame and turns it into low-res logits.

Text prompts: phrase vectors come from `samkit.text.encode_cached`, so the clicks that refine
a phrase's mask, each sent with the phrase, do not encode it again.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..automatic import SamAutomaticMaskGenerator
from ..embedding_cache import embedding_bytes
from ..masks import calculate_stability_score
from ..modeling import Sam
from ..predictor import ImageEmbedding, SamPredictor
from ..transforms import ResizeLongestSide
from .cache import ByteLRU

ImageLoader = Callable[[], np.ndarray]  # returns the image as HxWx3 uint8 RGB
# The logit an edited mask gives the model: +MASK_LOGIT where a low-res pixel is all inside,
# -MASK_LOGIT where it is all outside, linear in the part inside between (0, the threshold, on
# the boundary). 10 is about what the model itself gives a confident pixel of its own mask
# (samkit_default: +8 to +15 inside); fed back with its click, a mask it predicted comes back.
MASK_LOGIT = 10.0


def mask_prompt(
    mask: np.ndarray, input_size: int, low_res_size: tuple[int, int], logit: float = MASK_LOGIT
) -> np.ndarray:
    """An (H, W) bool mask of the original image as the model's mask input: (1, h, w) float32
    low-res logits, h, w = `low_res_size` (the prompt encoder's `mask_input_size`).

    The mask is resized as the image is (longest side to `input_size`, `ResizeLongestSide`),
    padded at the bottom and right to `input_size` squared, then shrunk to `low_res_size`;
    both steps average (area interpolation), so each low-res pixel holds the part of it that
    is inside, mapped to logits by `logit * (2 * part - 1)`.
    """
    import cv2

    h, w = mask.shape
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(h, w, input_size)
    part = cv2.resize(mask.astype(np.uint8) * 255, (new_w, new_h), interpolation=cv2.INTER_AREA)
    frame = np.zeros((input_size, input_size), dtype=np.float32)
    frame[:new_h, :new_w] = part / 255.0
    low = cv2.resize(frame, (low_res_size[1], low_res_size[0]), interpolation=cv2.INTER_AREA)
    return (logit * (2.0 * low - 1.0))[None].astype(np.float32)


@dataclass(frozen=True)
class Prediction:
    """Candidate masks for one set of prompts, in the model's order."""

    token: str  # names these low-res logits for the next request's mask input
    masks: np.ndarray  # (C, H, W) bool, C = 3 with multimask output, else 1
    scores: np.ndarray  # (C,) float32 predicted IoU
    stability: np.ndarray  # (C,) float32 stability score (IoU of the mask at logit +/- 1)
    seconds: float  # time spent in the model (prompt encoder + decoder + upsampling)


class Cancelled(Exception):
    """A segment-everything job that `Engine.cancel` stopped."""


@dataclass
class AmgJob:
    """One segment-everything job's progress, in grid points (all crops' together)."""

    total: int
    done: int = 0
    state: str = "queued"  # queued, running, done or cancelled
    stop: threading.Event = field(default_factory=threading.Event)


class _TrackedGenerator(SamAutomaticMaskGenerator):
    """The generator, counting the points of each batch into `job` and stopping (raising
    `Cancelled`) at the first batch after `job.stop` is set."""

    def __init__(self, model: Sam, **options: Any) -> None:
        super().__init__(model, output_mode="uncompressed_rle", **options)
        # Layer i has 4**i crops, each prompted with that layer's grid.
        self.job = AmgJob(sum(len(grid) * 4**i for i, grid in enumerate(self.point_grids)))

    def _process_batch(self, points: np.ndarray, *args: Any) -> Any:
        if self.job.stop.is_set():
            raise Cancelled
        out = super()._process_batch(points, *args)
        self.job.done += len(points)
        return out


@dataclass
class _KeyLock:
    """A lock for one image and how many threads hold or wait for it (guarded by the engine)."""

    lock: threading.Lock
    users: int = 0


class Engine:
    def __init__(
        self,
        model: Sam,
        *,
        cache_bytes: int = 1 << 30,
        logits_bytes: int = 128 << 20,
    ) -> None:
        """Serve `model` (eval mode, on its device).

        cache_bytes: bytes of image embeddings kept at most, counted by `embedding_bytes` (every
          tensor an image keeps: about 10 MiB an image for samkit_default, 38 MiB for
          ViT-B/L/H). logits_bytes: low-res logits kept for mask feedback.
        """
        self.model = model.eval()
        self.embeddings: ByteLRU[str, ImageEmbedding] = ByteLRU(cache_bytes, self.embedding_bytes)
        self.logits: ByteLRU[str, tuple[str, np.ndarray]] = ByteLRU(
            logits_bytes, lambda item: item[1].nbytes
        )
        # Only images being embedded right now have a lock: the last user removes it.
        self._locks: dict[str, _KeyLock] = {}
        self._locks_guard = threading.Lock()
        self._amg_lock = threading.Lock()  # one "segment everything" at a time: it is heavy
        self._amg_pool: ThreadPoolExecutor | None = None  # started by the first job
        self.amg_changed = threading.Condition()  # notified when `amg_jobs` changes
        self.amg_jobs = 0  # AMG jobs submitted and not finished (queued or running)
        self.amg_progress: dict[str, AmgJob] = {}  # the jobs given an id, until they finish

    @property
    def text_encoder(self) -> str | None:
        """The text encoder the model's text head reads, or None: the model takes no text."""
        return self.model.text_encoder if self.model.takes_text else None

    def embedding_bytes(self, embedding: ImageEmbedding) -> int:
        """The memory that keeping `embedding` costs (the model's weights not counted)."""
        return embedding_bytes(embedding, self.model)

    def embed(self, key: str, load: ImageLoader) -> tuple[SamPredictor, bool]:
        """A predictor of its own on image `key`'s embedding, and whether it was cached."""
        embedding, cached = self._embedding(key, load)
        predictor = SamPredictor(self.model)
        predictor.set_embedding(embedding)
        return predictor, cached

    def _embedding(self, key: str, load: ImageLoader) -> tuple[ImageEmbedding, bool]:
        embedding = self.embeddings.get(key)
        if embedding is not None:
            return embedding, True
        with self._lock_for(key):
            embedding = self.embeddings.get(key)  # another thread may have finished it
            if embedding is not None:
                return embedding, True
            (embedding,) = SamPredictor(self.model).set_images([load()])
            self.embeddings.put(key, embedding)
            return embedding, False

    def predict(
        self,
        key: str,
        load: ImageLoader,
        *,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_from: tuple[str, int] | None = None,
        mask: np.ndarray | None = None,
        multimask_output: bool = True,
        text: str | None = None,
    ) -> Prediction:
        """Masks for prompts on image `key` (embedded first when needed).

        point_coords: (N, 2) (X, Y) pixels; point_labels: (N,) 1 foreground, 0 background;
        box: (4,) XYXY pixels; mask_from: (token, index) of an earlier prediction on this
        image whose candidate `index` is fed back as the low-res mask prompt; or mask: an
        (H, W) bool mask of the image (an edited one) fed back as the mask prompt
        (`mask_prompt`); text: a phrase naming the object (a model without a text head
        raises ValueError). Prompt errors (shapes, NaN, outside the image) raise ValueError.
        """
        if mask_from is not None and mask is not None:
            raise ValueError("give mask_from (a prediction's logits) or mask, not both")
        predictor, _ = self.embed(key, load)
        mask_input = None if mask_from is None else self._previous_logits(key, *mask_from)
        if mask is not None:
            if mask.shape != predictor.original_size:
                h, w = predictor.original_size or (0, 0)
                raise ValueError(
                    f"mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but the image is {h}x{w}; "
                    "send a mask of the whole image"
                )
            size = self.model.image_encoder.img_size
            mask_input = mask_prompt(mask, size, self.model.prompt_encoder.mask_input_size)
        start = time.perf_counter()
        logits, scores, low_res = predictor.predict(
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            multimask_output=multimask_output,
            return_logits=True,
            text=text,
        )
        threshold = self.model.mask_threshold
        stability = calculate_stability_score(torch.from_numpy(logits), threshold, 1.0)
        masks = logits > threshold
        seconds = time.perf_counter() - start
        token = secrets.token_urlsafe(12)
        self.logits.put(token, (key, low_res))
        return Prediction(token, masks, scores, stability.numpy().astype(np.float32), seconds)

    def everything(self, key: str, load: ImageLoader, **options: Any) -> list[dict[str, Any]]:
        """Automatic mask generation over image `key`; records with uncompressed RLE masks.

        The image's cached embedding is used (and cached when it was not): only crops, if
        asked for, go through the image encoder. options: `SamAutomaticMaskGenerator`
        arguments (points_per_side, pred_iou_thresh, ...).
        """
        return self._everything(key, load, _TrackedGenerator(self.model, **options))

    def _everything(
        self, key: str, load: ImageLoader, generator: _TrackedGenerator
    ) -> list[dict[str, Any]]:
        job = generator.job
        try:
            if job.stop.is_set():  # cancelled while queued
                raise Cancelled
            image = load()
            embedding, _ = self._embedding(key, lambda: image)
            with self._amg_lock:
                job.state = "running"
                records = generator.generate(image, embedding=embedding)
        except Cancelled:
            job.state = "cancelled"
            raise
        job.state = "done"
        return records

    def submit_everything(
        self, key: str, load: ImageLoader, *, job_id: str | None = None, **options: Any
    ) -> Future[list[dict[str, Any]]]:
        """`everything`, queued on the engine's AMG thread (one job at a time, in order).

        The request thread does not wait in the queue (it awaits the future), so queued
        jobs never hold back `predict`. job_id: a name the client chose, for `progress` and
        `cancel` while the job is queued or running (one in use is a ValueError).
        """
        generator = _TrackedGenerator(self.model, **options)  # options checked here
        job = generator.job
        with self.amg_changed:
            if job_id is not None:
                if job_id in self.amg_progress:
                    raise ValueError(f"job {job_id!r} is already running; give each job a new id")
                self.amg_progress[job_id] = job
            if self._amg_pool is None:
                self._amg_pool = ThreadPoolExecutor(1, thread_name_prefix="samkit-amg")
            run = functools.partial(self._everything, key, load, generator)
            future = self._amg_pool.submit(run)
            self.amg_jobs += 1
            self.amg_changed.notify_all()
        future.add_done_callback(functools.partial(self._amg_done, job_id))  # at once if done
        return future

    def progress(self, job_id: str) -> AmgJob | None:
        """Job `job_id`'s progress while it is queued or running; None once it has finished."""
        with self.amg_changed:
            return self.amg_progress.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Stop job `job_id` at its next batch of points; False if it is not queued or running."""
        job = self.progress(job_id)
        if job is not None:
            job.stop.set()
        return job is not None

    def _amg_done(self, job_id: str | None, _: Future[list[dict[str, Any]]]) -> None:
        with self.amg_changed:
            self.amg_jobs -= 1
            if job_id is not None:
                del self.amg_progress[job_id]
            self.amg_changed.notify_all()

    def close(self) -> None:
        """Stop the AMG thread once its queued jobs are done."""
        with self.amg_changed:
            pool, self._amg_pool = self._amg_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

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

    @contextlib.contextmanager
    def _lock_for(self, key: str) -> Iterator[None]:
        """Hold image `key`'s lock; it exists only while some thread holds or waits for it."""
        with self._locks_guard:
            entry = self._locks.setdefault(key, _KeyLock(threading.Lock()))
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._locks_guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[key]

"""`SamPredictor`: embed an image once, then predict masks for many prompts cheaply.

NumPy at the boundary (`set_image`, `predict`), torch inside (`set_torch_image`,
`predict_torch`). Arguments, defaults, shapes and dtypes follow Meta's `segment_anything`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import devices, prompts
from .backend_choice import choose_backend
from .encoder_backends import OnnxEncoder, check_backend
from .modeling import Sam
from .modeling.transformer import ImageKeys
from .transforms import ResizeLongestSide

if TYPE_CHECKING:
    from .embedding_cache import EmbeddingCache
    from .text.ground import Proposals


@dataclass
class ImageEmbedding:
    """One image's embedding and the per-image state prompts need (`SamPredictor.set_images`)."""

    features: torch.Tensor  # (1, C, He, We) image embedding
    original_size: tuple[int, int]  # (H, W) of the image given to set_image
    input_size: tuple[int, int]  # (h, w) after resizing, before padding
    image_pe: torch.Tensor  # (1, C, He, We) positional encoding of the embedding grid
    prepared: ImageKeys  # the decoder's per-image work for prompts without a mask prompt
    # for a model with a text grounder: the resized input image (h, w, 3) uint8, which
    # text-alone answers zoom into (`text.zoom`), the same at the grounder's working size, and
    # the candidate masks of text-alone prompts, found on the first one
    image: np.ndarray | None = None
    pixels: np.ndarray | None = None
    proposals: Proposals | None = None


class SamPredictor:
    def __init__(
        self,
        sam_model: Sam,
        *,
        precision: str | None = None,
        cache: EmbeddingCache | None = None,
        backend: str = "torch",
    ) -> None:
        """Wraps `sam_model` for repeated prompting of one image at a time.

        precision: None, the model's own (`sam_model.precision`: what `samkit.load` was given,
        "fp32" for a model built otherwise); "fp32"; "bf16" to run the encoder (not the
        decoder; see `decode_autocast`) under bfloat16 autocast (faster only on CPUs with
        native bf16 matmuls, e.g. AVX-512 BF16 / AMX, and GPUs; outputs stay float32); "auto"
        (`devices.resolve_precision`: bf16 where that is faster, else fp32). "int8" goes
        with a model loaded with precision "int8" (`samkit.quantize`), and such a model with
        nothing else: its Linear layers hold int8 weights. Kept resolved as `self.precision`.
        cache: an `EmbeddingCache` (possibly shared) that `set_image` and `set_images` look
        each image up in before running the image encoder, and keep its embedding in after.
        backend: what runs the image encoder: "torch", or "openvino" / "onnxruntime" (CPU; the
        encoder exported to ONNX once and cached, see `samkit.encoder_backends`), in this
        precision (fp32, or bf16 on OpenVINO); "auto": the one that measured fastest for this
        model here (`samkit.backend_choice`; measured once, the first time). Prompts are
        always decoded in torch. Kept resolved as `self.backend`.
        """
        given = sam_model.precision if precision is None else precision
        self.precision = devices.resolve_precision(given, sam_model.device)
        if backend == "onnxruntime" and given == "auto":
            self.precision = "fp32"  # the fastest it has: no bf16 kernels on the CPU
        if (self.precision == "int8") != (sam_model.precision == "int8"):
            raise ValueError(_int8_mismatch(sam_model.precision, given))
        check_backend(backend, self.precision, sam_model.device)
        if backend == "auto":
            backend = choose_backend(sam_model, self.precision)
        self.model = sam_model
        self.cache = cache
        self.backend = backend
        self._encoder = (
            None if backend == "torch" else OnnxEncoder(sam_model, backend, self.precision)
        )
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self._state: ImageEmbedding | None = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context of the chosen precision (a no-op for fp32)."""
        return devices.autocast(self.device, self.precision)

    def decode_autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast of prompt decoding: off, on every device and in every precision, a
        caller's own autocast included. The decoder's factored path (`modeling.factored`)
        accumulates in place, which autocast cannot cast (under it, predict and AMG failed
        with mixed dtypes); on the CPU bf16 also made the decoder's small matmuls slower,
        not faster (vit_b, 1 point, 3 masks: 33 against 26 ms on an AMX CPU), and less exact.
        The image encoder, where the time goes, keeps the chosen precision."""
        return torch.autocast(self.device.type, enabled=False)

    # -- image --------------------------------------------------------------------------
    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Compute and keep the embedding of `image`.

        image: HxWx3 uint8 array in `image_format` ("RGB" or "BGR"). Anything else that
        `samkit.io.load_image` reads (a path, bytes, a PIL image, gray/RGBA/16-bit arrays) is
        converted to RGB first.
        """
        input_torch, original_size = self._input_tensor(image, image_format)
        self.set_torch_image(input_torch, original_size)

    @torch.no_grad()
    def set_images(
        self, images: Sequence[Any], image_format: str = "RGB", batch_size: int = 4
    ) -> list[ImageEmbedding]:
        """Embed several images, `batch_size` at a time through the encoder (throughput).

        Each image is what `set_image` takes. Returns one `ImageEmbedding` per image; pass one
        to `set_embedding` to prompt that image. The last image becomes the current one.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        out: list[ImageEmbedding] = []
        for start in range(0, len(images), batch_size):
            inputs = [
                self._input_tensor(im, image_format) for im in images[start : start + batch_size]
            ]
            out.extend(self._embed(inputs))
        if out:
            self._state = out[-1]
        return out

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make an image embedded earlier (`set_images`) the current one."""
        self._state = embedding

    def _input_tensor(self, image: Any, image_format: str) -> tuple[torch.Tensor, tuple[int, int]]:
        """(1, 3, h, w) resized float-ready tensor and the original (H, W) of `image`."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR'; got {image_format!r}")
        if not (
            isinstance(image, np.ndarray)
            and image.ndim == 3
            and image.shape[2] == 3
            and image.dtype == np.uint8
        ):
            from .io import load_image

            image = load_image(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        input_image = self.transform.apply_image(np.ascontiguousarray(image))
        input_torch = torch.as_tensor(input_image, device=self.device)
        input_torch = input_torch.permute(2, 0, 1).contiguous()[None, :, :, :]
        return input_torch, (int(image.shape[0]), int(image.shape[1]))

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Embed an image already resized by `transform.apply_image_torch`.

        transformed_image: (1, 3, h, w) with max(h, w) == model input size, 0-255 values.
        original_image_size: (H, W) of the image before resizing.
        """
        shape = tuple(transformed_image.shape)
        size = self.model.image_encoder.img_size
        if len(shape) != 4 or shape[1] != 3 or max(shape[2:]) != size:
            raise ValueError(
                f"set_torch_image expects a (1, 3, h, w) tensor whose longest side is {size}; "
                f"got shape {shape}. Resize with predictor.transform.apply_image_torch."
            )
        self.reset_image()
        h0, w0 = (int(s) for s in original_image_size)
        (self._state,) = self._embed([(transformed_image, (h0, w0))])

    def _embed(
        self, inputs: list[tuple[torch.Tensor, tuple[int, int]]], *, cached: bool = True
    ) -> list[ImageEmbedding]:
        """The state of each (resized (1, 3, h, w) image, original (H, W)): from the cache
        when it holds it, else through the encoder (the misses in one batch) into the cache.
        cached=False: through the encoder, the cache neither read nor filled."""
        keys = [self._cache_key(t) if cached else None for t, _ in inputs]
        out = [self._cached(k, t, size) for k, (t, size) in zip(keys, inputs, strict=True)]
        todo = [i for i, state in enumerate(out) if state is None]
        if todo:
            batch = torch.cat([self.model.preprocess(inputs[i][0]) for i in todo])
            if self._encoder is not None:
                features = self._encoder(batch)
            else:
                with self.autocast():
                    features = self.model.image_encoder(batch).float()
            for i, f in zip(todo, features, strict=True):
                t, original_size = inputs[i]
                input_size = (int(t.shape[2]), int(t.shape[3]))
                # f[None] cloned: a view would keep the whole batch's embeddings alive
                out[i] = state = self._image_state(f[None].clone(), original_size, input_size)
                key = keys[i]
                if self.cache is not None and key is not None:
                    self.cache.put(key, state, self.model)
        states = [state for state in out if state is not None]  # every one is set by now
        if self.model.text_grounder is not None:
            from .text.grounding import shrink

            for i, state in enumerate(states):
                image = inputs[i][0][0].permute(1, 2, 0).clamp(0, 255).round().byte().cpu().numpy()
                states[i] = dataclasses.replace(state, image=image, pixels=shrink(image))
        return states

    def _cache_key(self, input_image: torch.Tensor) -> str | None:
        if self.cache is None:
            return None
        tag = self.precision if self.backend == "torch" else f"{self.precision}+{self.backend}"
        return self.cache.key(input_image, self.model, tag)

    def _cached(
        self, key: str | None, input_image: torch.Tensor, original_size: tuple[int, int]
    ) -> ImageEmbedding | None:
        """The cache's state of `input_image` for an image of `original_size`, or None."""
        if self.cache is None or key is None:
            return None
        input_size = (int(input_image.shape[2]), int(input_image.shape[3]))

        def rebuild(features: torch.Tensor) -> ImageEmbedding:  # from a disk hit
            return self._image_state(features.to(self.device), original_size, input_size)

        found = self.cache.get(key, self.model, rebuild)
        return None if found is None else dataclasses.replace(found, original_size=original_size)

    def _image_state(
        self, features: torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]
    ) -> ImageEmbedding:
        """State of one image: its embedding and the decoder's prompt-independent work."""
        with self.decode_autocast():
            image_pe = self.model.prompt_encoder.get_dense_pe()
            _, no_mask = self.model.prompt_encoder(points=None, boxes=None, masks=None)
            prepared = self.model.mask_decoder.prepare(features, image_pe, no_mask)
        return ImageEmbedding(features, original_size, input_size, image_pe, prepared)

    # -- prompts ------------------------------------------------------------------------
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        text: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image.

        point_coords: (N, 2) (X, Y) pixels of the original image; point_labels: (N,), 1 for
        foreground, 0 for background. box: (4,) XYXY pixels. mask_input: (1, 256, 256) low-res
        logits, usually the previous call's `low_res_logits` for the best mask.
        text: a phrase naming the object ("the red disc"), alone or with the other prompts;
        only for a model with a text head (`encode_text`). A phrase names one object, so
        multimask_output=False is the usual choice with it.
        Returns masks (C, H, W) bool (float logits if return_logits), scores (C,) float32 and
        low_res_logits (C, 256, 256) float32, where C is 3 with multimask_output, else 1.
        """
        state = self._require_image()
        mask_size = self.model.prompt_encoder.mask_input_size
        p = prompts.validate(
            point_coords, point_labels, box, mask_input, state.original_size, mask_size
        )
        coords_t = labels_t = box_t = mask_t = None
        if p.point_coords is not None and p.point_labels is not None:
            coords = self.transform.apply_coords(p.point_coords, state.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(p.point_labels, dtype=torch.int, device=self.device)[None]
        if p.box is not None:
            boxes = self.transform.apply_boxes(p.box, state.original_size)
            box_t = torch.as_tensor(boxes, dtype=torch.float, device=self.device)[None]
        if p.mask_input is not None:
            mask_t = torch.as_tensor(p.mask_input, dtype=torch.float, device=self.device)[None]
        text_t = None if text is None else self.encode_text([text])
        masks, iou_predictions, low_res = self.predict_torch(
            coords_t,
            labels_t,
            box_t,
            mask_t,
            multimask_output,
            return_logits=True,
            text_embeddings=text_t,
        )
        logits = masks[0].detach().cpu().numpy()
        # numpy's compare is ~2.5x faster than torch's into a bool tensor on the CPU
        return (
            logits if return_logits else logits > self.model.mask_threshold,
            iou_predictions[0].detach().float().cpu().numpy(),
            low_res[0].detach().float().cpu().numpy(),
        )

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prediction with prompts already in the resized frame (`transform.apply_*`).

        point_coords: (B, N, 2) (X, Y); point_labels: (B, N); boxes: (B, 4) XYXY;
        mask_input: (B, 1, 256, 256); text_embeddings: (B, D) vectors of the model's text
        encoder (`encode_text`), one text token each. Returns masks (B, C, H, W),
        iou_predictions (B, C), low_res_logits (B, C, 256, 256).
        """
        state = self._require_image()
        prompts.validate_torch(point_coords, point_labels, boxes, mask_input, text_embeddings)
        if text_embeddings is not None:
            self._require_text_head()
            text_embeddings = text_embeddings.to(self.device)
        if text_embeddings is not None and self.model.text_grounder is not None:
            from .text.ground import ground

            low_res_masks, iou_predictions = ground(
                self,
                point_coords,
                point_labels,
                boxes,
                mask_input,
                multimask_output,
                text_embeddings,
            )
        else:
            low_res_masks, iou_predictions = self.decode_low_res(
                point_coords, point_labels, boxes, mask_input, multimask_output, text_embeddings
            )
        masks = self.model.postprocess_masks(low_res_masks, state.input_size, state.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res_masks

    @torch.no_grad()
    def decode_low_res(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        text_embeddings: torch.Tensor | None = None,
        *,
        every_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's low-res logits (B, C, 256, 256) and predicted IoUs (B, C), float32,
        for prompts as `predict_torch` takes them (checked there), the text as a text token;
        nothing is upscaled. every_mask: all C = 4 outputs of one decoder pass, the
        single-mask one first (multimask_output then plays no part)."""
        state = self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        with self.decode_autocast():
            sparse, dense = self.model.prompt_encoder(
                points=points, boxes=boxes, masks=mask_input, text=text_embeddings
            )
            decoder = self.model.mask_decoder
            if mask_input is None:  # every prompt shares the image's prepared keys
                low_res_masks, iou_predictions = decoder.predict_prepared(
                    image_pe=state.image_pe,
                    sparse_prompt_embeddings=sparse,
                    prepared=state.prepared,
                    multimask_output=multimask_output,
                    every_mask=every_mask,
                )
            elif every_mask:
                low_res_masks, iou_predictions = decoder.predict_masks(
                    image_embeddings=state.features,
                    image_pe=state.image_pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                )
            else:
                low_res_masks, iou_predictions = decoder(
                    image_embeddings=state.features,
                    image_pe=state.image_pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multimask_output,
                )
        return low_res_masks.float(), iou_predictions.float()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) vectors of `texts` from the text encoder the model's text head was trained
        with (`Sam.text_encoder`), for `predict_torch(text_embeddings=...)`."""
        from .text import encode_cached

        if isinstance(texts, str):
            raise ValueError("encode_text takes a list of phrases, not one string")
        return encode_cached(self._require_text_head(), texts).to(self.device)

    def _require_text_head(self) -> str:
        """The model's text encoder name, or ValueError naming what the model lacks."""
        if not self.model.takes_text or not self.model.text_encoder:
            raise ValueError(
                f"this model ({type(self.model.image_encoder).__name__} encoder, "
                f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.1f}M parameters) has "
                "no text head: it takes points, boxes and masks only. Text prompts need a "
                "model with one: the bundled samkit_text, or one trained with text (samkit "
                "finetune --text; docs/guide.md, Text prompts)"
            )
        return self.model.text_encoder

    # -- state --------------------------------------------------------------------------
    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding, (1, C, He, We)."""
        return self._require_image().features

    def reset_image(self) -> None:
        """Forget the current image."""
        self._state = None

    @property
    def is_image_set(self) -> bool:
        return self._state is not None

    @property
    def features(self) -> torch.Tensor | None:
        return None if self._state is None else self._state.features

    @property
    def original_size(self) -> tuple[int, int] | None:
        return None if self._state is None else self._state.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        return None if self._state is None else self._state.input_size

    @property
    def prepared(self) -> ImageKeys | None:
        """The decoder's per-image work for prompts without a mask prompt."""
        return None if self._state is None else self._state.prepared

    @property
    def image_pe(self) -> torch.Tensor | None:
        return None if self._state is None else self._state.image_pe

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _require_image(self) -> ImageEmbedding:
        if self._state is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        return self._state


def _int8_mismatch(model_precision: str, given: str) -> str:
    """Why a predictor cannot run a model of `model_precision` at precision `given`."""
    if model_precision == "int8":
        return (
            "this model was loaded with precision int8: its Linear layers hold int8 weights, "
            f"so it cannot run at precision {given}. Leave the predictor's precision out, or "
            f"load the model again with precision {given!r}"
        )
    return (
        f"precision int8 needs a model loaded with it (samkit.load(name, precision='int8'), "
        f"or samkit.quantize.quantize_int8(model)); this model's precision is {model_precision}"
    )

"""SAM on onnxruntime (or OpenVINO) alone: a predictor that needs numpy, pillow and the
runtime, not torch.

It runs the two graphs `samkit export-onnx --encoder-out` writes (see `samkit.export.onnx`)
with `SamPredictor`'s interface: `set_image` once per image, then `predict` per prompt. The
decoder graph has the official export's interface, so a decoder exported by Meta's script
works too, given `img_size`. Install without torch:

    pip install numpy pillow onnxruntime && pip install --no-deps samkit
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..io.images import load_image
from ..prompts import validate
from ..transforms import ResizeLongestSide
from .sessions import open_session

IMG_SIZE_KEY = "samkit_img_size"  # graph metadata written by samkit's exporter
MASK_THRESHOLD_KEY = "samkit_mask_threshold"
IMAGE_FORMAT_KEY = "samkit_image_format"
TEXT_ENCODER_KEY = "samkit_text_encoder"  # the same key as in weights files' metadata
TEXT_INPUT = "text_embeddings"  # the decoder input `samkit export-onnx --text` adds


class OnnxPredictor:
    """Prompted masks from an ONNX image encoder and an ONNX decoder.

    encoder / decoder: paths of the graphs. img_size: the model's input size, read from the
    graphs' metadata when samkit exported them. runtime: "onnxruntime" (default) or
    "openvino" (`pip install openvino`), both on the same files. threads: the runtime's
    intra-op threads (None: its default). providers: onnxruntime execution providers (default:
    CPU). precision: OpenVINO's inference precision, "auto" (its choice: bf16 where the CPU
    has AVX-512 BF16 or AMX), "fp32" or "bf16"; onnxruntime runs the graph's own (int8 graphs
    come from `samkit export-onnx --int8`).

    A decoder exported with text input (`samkit export-onnx --text`) also takes text vectors:
    `predict(..., text_embedding=v)`, where v is the phrase's vector from the text encoder
    that `text_encoder` names (`samkit.text.get_text_encoder(name).encode([phrase])[0]`,
    which needs torch); `text_dim` is its width (None for a decoder without text input).
    """

    def __init__(
        self,
        encoder: str | os.PathLike[str],
        decoder: str | os.PathLike[str],
        *,
        img_size: int | None = None,
        runtime: str = "onnxruntime",
        threads: int | None = None,
        providers: list[str] | None = None,
        precision: str = "auto",
    ) -> None:
        self.runtime = runtime
        self.encoder, self.decoder = (
            open_session(path, runtime, threads=threads, providers=providers, precision=precision)
            for path in (encoder, decoder)
        )
        meta = {**self.decoder.metadata, **self.encoder.metadata}
        if img_size is None and IMG_SIZE_KEY not in meta:
            raise ValueError(
                f"{encoder} does not record the model's input size ({IMG_SIZE_KEY}); "
                "pass img_size (1024 for Meta's SAM models)"
            )
        self.img_size = int(img_size if img_size is not None else meta[IMG_SIZE_KEY])
        self.mask_threshold = float(meta.get(MASK_THRESHOLD_KEY, 0.0))
        self.image_format = meta.get(IMAGE_FORMAT_KEY, "RGB")
        has_text = TEXT_INPUT in self.decoder.inputs
        self.text_dim: int | None = self.decoder.inputs[TEXT_INPUT] if has_text else None
        self.text_encoder: str | None = meta.get(TEXT_ENCODER_KEY) if has_text else None
        self._decoder_path = os.fspath(decoder)
        self.transform = ResizeLongestSide(self.img_size)
        self.reset_image()

    def reset_image(self) -> None:
        """Forget the current image."""
        self.features: np.ndarray | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Embed `image`: an HxWx3 uint8 array in `image_format` ("RGB" or "BGR"), or anything
        `samkit.io.load_image` reads (a path, bytes, a PIL image, other arrays)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR'; got {image_format!r}")
        rgb = load_image(image)
        if image_format != self.image_format:
            rgb = rgb[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(rgb))
        batch = resized.transpose(2, 0, 1)[None].astype(np.float32)  # (1, 3, h, w), 0-255
        (self.features,) = self.encoder.run(None, {"input_image": batch})
        self.original_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.input_size = (int(resized.shape[0]), int(resized.shape[1]))

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        text_embedding: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the current image, as `SamPredictor.predict` returns them:
        masks (C, H, W) bool (float32 logits with return_logits), scores (C,) and low-res
        logits (C, 4He, 4We) float32; C is 3 with multimask_output, else 1.
        text_embedding: (D,) or (1, D) text-encoder vector of a phrase, alone or with the
        other prompts; only for a decoder with text input (see the class docstring)."""
        if self.features is None or self.original_size is None:
            raise RuntimeError("call set_image before predict")
        mask_size = (4 * self.features.shape[2], 4 * self.features.shape[3])
        p = validate(point_coords, point_labels, box, mask_input, self.original_size, mask_size)
        text = self._text_input(text_embedding)
        coords = np.zeros((0, 2))
        labels = np.zeros(0)
        if p.point_coords is not None and p.point_labels is not None:
            coords = self.transform.apply_coords(p.point_coords, self.original_size)
            labels = p.point_labels.astype(np.float64)
        if p.box is not None:  # the box's corners, labelled 2 and 3
            corners = self.transform.apply_boxes(p.box, self.original_size).reshape(2, 2)
            coords = np.concatenate([coords, corners])
            labels = np.concatenate([labels, [2.0, 3.0]])
        elif p.point_coords is not None or text_embedding is None:
            # a padding point, as SAM's prompt encoder adds after points when there is no box
            # (a prompt of text alone has none)
            coords = np.concatenate([coords, np.zeros((1, 2))])
            labels = np.concatenate([labels, [-1.0]])
        has_mask = p.mask_input is not None
        masks, scores, low_res = self.decoder.run(
            ["masks", "iou_predictions", "low_res_masks"],
            {
                **text,
                "image_embeddings": self.features,
                "point_coords": coords[None].astype(np.float32),
                "point_labels": labels[None].astype(np.float32),
                "mask_input": (
                    p.mask_input[None].astype(np.float32)
                    if p.mask_input is not None
                    else np.zeros((1, 1, *mask_size), dtype=np.float32)
                ),
                "has_mask_input": np.array([float(has_mask)], dtype=np.float32),
                "orig_im_size": np.array(self.original_size, dtype=np.float32),
            },
        )
        tokens = slice(1, None) if multimask_output else slice(0, 1)
        if masks.shape[1] == 1:  # a return_single_mask graph has chosen already
            tokens = slice(0, 1)
        masks, scores, low_res = masks[0, tokens], scores[0, tokens], low_res[0, tokens]
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores.astype(np.float32), low_res.astype(np.float32)

    def _text_input(self, text_embedding: np.ndarray | None) -> dict[str, np.ndarray]:
        """The decoder's text_embeddings feed: (1, D) for a vector, (0, D) for none, nothing
        for a decoder without text input; ValueError for a vector it cannot take."""
        if self.text_dim is None:
            if text_embedding is not None:
                raise ValueError(
                    f"{self._decoder_path} has no {TEXT_INPUT} input: export the decoder with "
                    "`samkit export-onnx --text` (from a model with a text head)"
                )
            return {}
        if text_embedding is None:
            return {TEXT_INPUT: np.zeros((0, self.text_dim), dtype=np.float32)}
        vector = np.asarray(text_embedding, dtype=np.float32)
        if vector.shape not in ((self.text_dim,), (1, self.text_dim)):
            raise ValueError(
                f"text_embedding must be one ({self.text_dim},) text-encoder vector "
                f"({self.text_encoder or 'the encoder the model was trained with'}); "
                f"got shape {vector.shape}"
            )
        if not np.isfinite(vector).all():
            raise ValueError("text_embedding has NaN or infinite values")
        return {TEXT_INPUT: vector.reshape(1, self.text_dim)}

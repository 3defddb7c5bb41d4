"""ONNX export of the prompt encoder + mask decoder (and of the image encoder).

The decoder graph has the official `segment_anything` export's interface, so tools built for
Meta's ONNX decoder (the web demo, third-party apps) accept samkit's:

  inputs   image_embeddings (1, C, He, We) float32
           point_coords     (1, N, 2) float32, (X, Y) in the resized (longest side = img_size)
                            frame; N is dynamic
           point_labels     (1, N) float32: 1 foreground, 0 background, 2 / 3 box top-left /
                            bottom-right corner, -1 padding (add one (0, 0) point with label -1
                            when there is no box, as the official demo does)
           mask_input       (1, 1, 4He, 4We) float32 low-res logits
           has_mask_input   (1,) float32, 1 to use mask_input, else 0
           orig_im_size     (2,) float32, (H, W) of the original image
  outputs  masks            (1, T, H, W) float32 logits at the original size
           iou_predictions  (1, T) float32 (stability scores with use_stability_score)
           low_res_masks    (1, T, 4He, 4We) float32 logits
  T is 4 (single-mask token, then the 3 multimask outputs) or 1 with return_single_mask.
  return_extra_metrics adds stability_scores (1, T) and areas (1, T) after iou_predictions.

With text_input (a model with a text head, `samkit export-onnx --text`) one more input follows:
           text_embeddings  (K, D) float32: K = 1 for a phrase's text-encoder vector (the
                            encoder the graph's metadata names, `samkit.text`), K = 0 for a
                            prompt without text
  The model's text projection turns it into one more sparse token after the points, as
  `PromptEncoder` does. A text-only prompt takes no points: point_coords (1, 0, 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import calculate_stability_score
from ..modeling import Sam
from .runtime import (
    IMAGE_FORMAT_KEY,
    IMG_SIZE_KEY,
    MASK_THRESHOLD_KEY,
    TEXT_ENCODER_KEY,
    TEXT_INPUT,
)

DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
ENCODER_INPUTS = ("input_image",)
ENCODER_OUTPUTS = ("image_embeddings",)
DEFAULT_OPSET = 17


class SamOnnxModel(nn.Module):
    """Prompt encoding, mask decoding and upscaling to the original size as one graph, with
    the official `segment_anything.utils.onnx.SamOnnxModel` constructor, methods and outputs.
    """

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
        *,
        text_input: bool = False,
    ) -> None:
        """return_single_mask: keep only the best mask (the single-mask token when there are
        more than 2 prompt tokens, padding and text included; else the multimask output of
        highest score).
        use_stability_score: replace predicted IoUs by stability scores of the low-res masks
        (at `stability_score_offset`, 1.0 as in the official export).
        return_extra_metrics: also return stability scores and areas of the full-size masks.
        text_input: run `forward_with_text`, which also takes text_embeddings, instead of
        `forward` (the model must have a text head).
        """
        if text_input and model.prompt_encoder.text_projection is None:
            raise ValueError(
                "text_input needs a model with a text head (prompt_encoder.text_projection); "
                "this one takes points, boxes and masks only"
            )
        super().__init__()
        self.mask_decoder = model.mask_decoder
        self.model = model
        self.img_size = model.img_size
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.stability_score_offset = 1.0
        self.return_extra_metrics = return_extra_metrics
        self.text_input = text_input

    @staticmethod
    def resize_longest_image_size(
        input_image_size: torch.Tensor, longest_side: int
    ) -> torch.Tensor:
        """(H, W) scaled so that the longer side is `longest_side`, rounded, as int64."""
        size = input_image_size.to(torch.float32)
        return torch.floor(size * (longest_side / torch.max(size)) + 0.5).to(torch.int64)

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """(1, N, C) tokens of points whose labels may also be 2 / 3 (box corners)."""
        prompt_encoder = self.model.prompt_encoder
        size = (self.img_size, self.img_size)
        emb = prompt_encoder.pe_layer.forward_with_coords(point_coords + 0.5, size)
        labels = point_labels[..., None]  # (1, N, 1)
        emb = torch.where(labels == -1, prompt_encoder.not_a_point_embed.weight, emb)
        for i, table in enumerate(prompt_encoder.point_embeddings):
            emb = emb + (labels == i).to(emb.dtype) * table.weight  # type: ignore[operator]
        return emb

    def _embed_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(1, K, C) tokens of K = 1 or 0 text vectors (K, D)."""
        projection = self.model.prompt_encoder.text_projection
        assert projection is not None  # checked in __init__
        return projection(text_embeddings).unsqueeze(0)

    def _embed_masks(self, input_mask: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        prompt_encoder = self.model.prompt_encoder
        has = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has * prompt_encoder.mask_downscaling(input_mask) + (1 - has) * no_mask

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-res logits -> padded input size -> cut the padding -> the original (H, W)."""
        size = self.img_size
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        input_hw = self.resize_longest_image_size(orig_im_size, size)
        masks = masks[..., : input_hw[0], : input_hw[1]]
        orig_hw = orig_im_size.to(torch.int64)
        # Tensor sizes (not ints) keep the size an input of the traced graph.
        orig = (orig_hw[0], orig_hw[1])
        return F.interpolate(masks, size=orig, mode="bilinear", align_corners=False)  # type: ignore[arg-type]

    def select_masks(
        self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token 0 when num_points > 2 (an unambiguous prompt), else the best multimask;
        arithmetic instead of control flow, so that the choice stays in the graph."""
        bonus = torch.zeros_like(iou_preds[:1])
        bonus[:, 0] = 1000.0
        best = torch.argmax(iou_preds + (num_points - 2.5) * bonus, dim=1)  # (B,)
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, best].unsqueeze(1), iou_preds[rows, best].unsqueeze(1)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        # The official parameters only: torch's TorchScript exporter would pass any extra
        # keyword parameter's default as one more positional input.
        if self.text_input:
            raise ValueError(
                "this SamOnnxModel has text_input=True: call forward_with_text(..., "
                "text_embeddings), or export it with export_decoder(..., text_input=True)"
            )
        return self._decode(
            image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size
        )

    @torch.no_grad()
    def forward_with_text(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
        text_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """`forward` with one more input, text_embeddings (K, D), K = 1 or 0 (see the module
        docstring); only with text_input=True."""
        if not self.text_input:
            raise ValueError("forward_with_text needs a SamOnnxModel built with text_input=True")
        prompts = (point_coords, point_labels, mask_input, has_mask_input)
        return self._decode(image_embeddings, *prompts, orig_im_size, text_embeddings)

    def _decode(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        sparse = self._embed_points(point_coords, point_labels)
        if text_embeddings is not None:
            sparse = torch.cat([sparse, self._embed_text(text_embeddings)], dim=1)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res, scores = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        threshold = self.model.mask_threshold
        if self.use_stability_score:
            scores = calculate_stability_score(low_res, threshold, self.stability_score_offset)
        if self.return_single_mask:
            low_res, scores = self.select_masks(low_res, scores, sparse.shape[1])
        masks = self.mask_postprocessing(low_res, orig_im_size)
        if self.return_extra_metrics:
            stability = calculate_stability_score(masks, threshold, self.stability_score_offset)
            areas = (masks > threshold).sum(-1).sum(-1)
            return masks, scores, stability, areas, low_res
        return masks, scores, low_res


class _TextInputDecoder(nn.Module):
    """The module the exporter traces for a text_input SamOnnxModel: its forward_with_text."""

    def __init__(self, decoder: SamOnnxModel) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decoder.forward_with_text(*inputs)


class _OnnxEncoder(nn.Module):
    """Normalise, pad and encode a resized (1, 3, h, w) 0-255 image."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model

    @torch.no_grad()
    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoder(self.model.preprocess(input_image))


def decoder_example_inputs(model: Sam, num_points: int = 3) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes and dtypes for tracing or running the decoder graph."""
    g = torch.Generator().manual_seed(0)
    c = model.prompt_encoder.embed_dim
    he, we = model.prompt_encoder.image_embedding_size
    mh, mw = model.prompt_encoder.mask_input_size
    return (
        torch.randn(1, c, he, we, generator=g),
        torch.rand(1, num_points, 2, generator=g) * model.img_size,
        torch.randint(-1, 4, (1, num_points), generator=g).float(),
        torch.randn(1, 1, mh, mw, generator=g),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),  # (H, W), the official export's example size
    )


def text_example_input(model: Sam) -> torch.Tensor:
    """A (1, D) unit vector, as a text encoder gives, for the text_embeddings input."""
    projection = model.prompt_encoder.text_projection
    if projection is None:
        raise ValueError("the model has no text head (prompt_encoder.text_projection)")
    dim = cast(nn.Linear, projection.layers[0]).in_features
    text = torch.randn(1, dim, generator=torch.Generator().manual_seed(1))
    return F.normalize(text, dim=-1)


def export_decoder(
    model: Sam,
    path: str | os.PathLike[str],
    *,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    opset: int = DEFAULT_OPSET,
    text_input: bool = False,
) -> Path:
    """Write the decoder graph (see the module docstring) to `path`; returns the path.
    text_input adds the text_embeddings input (ValueError for a model without a text head)."""
    decoder = SamOnnxModel(
        model,
        return_single_mask=return_single_mask,
        use_stability_score=use_stability_score,
        return_extra_metrics=return_extra_metrics,
        text_input=text_input,
    ).eval()
    outputs = list(DECODER_OUTPUTS)
    if return_extra_metrics:
        outputs[2:2] = ["stability_scores", "areas"]
    points = {1: "num_points"}
    dynamic_axes = {"point_coords": points, "point_labels": points}
    module: nn.Module = decoder
    inputs: tuple[str, ...] = DECODER_INPUTS
    example = decoder_example_inputs(model)
    if text_input:
        module = _TextInputDecoder(decoder)
        inputs += (TEXT_INPUT,)
        example += (text_example_input(model),)
        dynamic_axes[TEXT_INPUT] = {0: "num_texts"}
    return _export(
        module,
        example,
        path,
        inputs,
        outputs,
        dynamic_axes,
        opset,
        _metadata(model, text_input=text_input),
    )


def export_encoder(model: Sam, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> Path:
    """Write the image encoder graph: input_image (1, 3, h, w) float32 0-255 RGB, resized so
    that max(h, w) == img_size (h, w dynamic) -> image_embeddings (1, C, He, We)."""
    size = model.img_size
    example = (torch.rand(1, 3, size, size * 3 // 4) * 255,)
    dims = {2: "height", 3: "width"}
    return _export(
        _OnnxEncoder(model).eval(),
        example,
        path,
        ENCODER_INPUTS,
        ENCODER_OUTPUTS,
        {"input_image": dims},
        opset,
        _metadata(model),
    )


def _export(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...] | list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
    metadata: dict[str, str],
) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path), load_external_data=False)  # weights over 2 GB stay outside
    onnx.helper.set_model_props(graph, metadata)
    onnx.save(graph, str(path))
    return path


def _metadata(model: Sam, *, text_input: bool = False) -> dict[str, str]:
    """What `OnnxPredictor` needs to know about the model, stored in the graph; a text_input
    graph also names the text encoder its text_embeddings come from."""
    metadata = {
        IMG_SIZE_KEY: str(model.img_size),
        MASK_THRESHOLD_KEY: str(model.mask_threshold),
        IMAGE_FORMAT_KEY: model.image_format,
    }
    if text_input and model.text_encoder:
        metadata[TEXT_ENCODER_KEY] = model.text_encoder
    return metadata


def quantize_dynamic_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write `src`'s graph with int8 weights (onnxruntime dynamic quantization: MatMul and
    Conv weights stored as signed int8 per tensor, activations quantized on the fly); the
    interface and metadata are unchanged. Returns `dst`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(Path(src), Path(dst), weight_type=QuantType.QInt8)
    return Path(dst)

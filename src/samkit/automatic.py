"""`SamAutomaticMaskGenerator`: "segment everything" with a grid of point prompts.

Drop-in for the official generator: same arguments, defaults, output records and masks. Two
changes make it cheaper without changing any result: the decoder makes a mask only for the
outputs whose predicted IoU passes `pred_iou_thresh` (the IoU head reads the decoder's tokens,
not the mask), and the upsampled masks of a batch are processed in chunks bounded in bytes and
turned into RLE right away, so memory stays flat on large images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import masks as M
from .mask_data import MaskData
from .modeling import Sam
from .predictor import ImageEmbedding, SamPredictor

if TYPE_CHECKING:
    from .embedding_cache import EmbeddingCache

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# Upper bound on the float logits of full-size masks held at once (bytes).
CHUNK_BYTES = 256 * 1024 * 1024


def _as_rgb(image: Any) -> np.ndarray:
    """HxWx3 uint8 RGB as given, or read by `samkit.io.load_image`."""
    if isinstance(image, np.ndarray) and image.shape[2:] == (3,) and image.dtype == np.uint8:
        return image
    from .io import load_image

    return load_image(image)


class SamAutomaticMaskGenerator:
    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        precision: str | None = None,
        cache: EmbeddingCache | None = None,
        backend: str = "torch",
    ) -> None:
        """Generate masks for a whole image from a grid of point prompts.

        points_per_side: grid points along each side (the grid has points_per_side**2); give
          exactly one of it and `point_grids` (a list, one (N, 2) array in [0, 1] (X, Y) per
          crop layer).
        points_per_batch: points run through the decoder together.
        pred_iou_thresh / stability_score_thresh: keep masks scoring at least this; the
          stability score is the IoU of the mask thresholded at +/- stability_score_offset.
        box_nms_thresh / crop_nms_thresh: box IoU for NMS within a crop / across crops.
        crop_n_layers: also run on 4**i zoomed crops for i = 1..crop_n_layers, overlapping by
          crop_overlap_ratio, with crop_n_points_downscale_factor**i fewer points per side.
        min_mask_region_area: remove holes and islands smaller than this (pixels).
        output_mode: "binary_mask" (HxW bool), "uncompressed_rle" or "coco_rle".
        precision: None (the model's own, `model.precision`), "fp32", "bf16", "auto" or
          "int8" (see `SamPredictor`).
        cache: an `EmbeddingCache` the image and each crop are looked up in before they go
          through the image encoder (a second `generate` of an image embeds nothing).
        backend: what runs the image encoder, "torch", "openvino" or "onnxruntime" (see
          `SamPredictor`).
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}; got {output_mode!r}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1; got {points_per_batch}")
        if points_per_side is not None:
            self.point_grids = M.build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            assert point_grids is not None
            if len(point_grids) != crop_n_layers + 1:
                raise ValueError(
                    f"point_grids needs one grid per crop layer ({crop_n_layers + 1}); "
                    f"got {len(point_grids)}"
                )
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
        self.predictor = SamPredictor(model, precision=precision, cache=cache, backend=backend)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.no_grad()
    def generate(
        self, image: Any, *, embedding: ImageEmbedding | None = None
    ) -> list[dict[str, Any]]:
        """Masks for `image` (HxWx3 uint8 RGB, or anything `samkit.io.load_image` reads).

        embedding: the whole image's embedding when it was computed already (e.g. by
          `SamPredictor.set_images` for prompting); then only crops go through the encoder.

        Returns one record per mask: segmentation (per output_mode), area (pixels), bbox
        (XYWH), predicted_iou, point_coords ([[X, Y]] of the prompt), stability_score and
        crop_box (XYWH).
        """
        rgb = _as_rgb(image)
        if embedding is not None and embedding.original_size != rgb.shape[:2]:
            h, w = embedding.original_size
            raise ValueError(
                f"embedding is of a {h}x{w} (HxW) image but the image is "
                f"{rgb.shape[0]}x{rgb.shape[1]}; pass the embedding of this image"
            )
        return self._generate(rgb, embedding)

    @torch.no_grad()
    def generate_batch(
        self, images: Sequence[Any], batch_size: int = 4
    ) -> list[list[dict[str, Any]]]:
        """`generate` for each of several images, the same records; the full-image embeddings
        go through the encoder `batch_size` images at a time (throughput)."""
        rgb = [_as_rgb(im) for im in images]
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(rgb), batch_size):
            chunk = rgb[start : start + batch_size]
            embeddings = self.predictor.set_images(chunk, batch_size=batch_size)
            out.extend(self._generate(im, e) for im, e in zip(chunk, embeddings, strict=True))
        return out

    def _generate(
        self, image: np.ndarray, embedding: ImageEmbedding | None = None
    ) -> list[dict[str, Any]]:
        data = self._generate_masks(image, embedding)
        if self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        return [self._record(data, i) for i in range(len(data))]

    def _record(self, data: MaskData, i: int) -> dict[str, Any]:
        rle = data["rles"][i]
        segmentation: Any
        if self.output_mode == "coco_rle":
            segmentation = M.coco_rle_from_uncompressed(rle)
        elif self.output_mode == "binary_mask":
            segmentation = M.rle_to_mask(rle)
        else:
            segmentation = rle
        return {
            "segmentation": segmentation,
            "area": M.area_from_rle(rle),
            "bbox": M.box_xyxy_to_xywh(data["boxes"][i]).tolist(),
            "predicted_iou": data["iou_preds"][i].item(),
            "point_coords": [data["points"][i].tolist()],
            "stability_score": data["stability_score"][i].item(),
            "crop_box": M.box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
        }

    def _generate_masks(self, image: np.ndarray, embedding: ImageEmbedding | None) -> MaskData:
        """All crops' masks; `embedding`, when given, is the whole image's."""
        orig_size = (image.shape[0], image.shape[1])
        crop_boxes, layer_idxs = M.generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        data = _empty()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
            whole = embedding if layer_idx == 0 else None
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size, whole))
        if len(crop_boxes) > 1 and len(data):
            # Prefer masks from smaller (more zoomed-in) crops.
            scores = 1 / M.box_area(data["crop_boxes"])
            keep = M.batched_nms(
                data["boxes"].float(), scores, torch.zeros(len(data)), self.crop_nms_thresh
            )
            data.filter(keep)
        return data

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer_idx: int,
        orig_size: tuple[int, int],
        embedding: ImageEmbedding | None = None,
    ) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        crop_size = (cropped.shape[0], cropped.shape[1])
        if embedding is not None:
            self.predictor.set_embedding(embedding)
        else:
            self.predictor.set_image(cropped)
        points_scale = np.array(crop_size)[None, ::-1]
        points_for_image = self.point_grids[layer_idx] * points_scale
        data = _empty()
        for (points,) in M.batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, crop_size, crop_box, orig_size))
        self.predictor.reset_image()
        if len(data):
            keep = M.batched_nms(
                data["boxes"].float(),
                data["iou_preds"],
                torch.zeros(len(data)),
                self.box_nms_thresh,
            )
            data.filter(keep)
        data["boxes"] = M.uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = M.uncrop_points(data["points"], crop_box)
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        crop_size: tuple[int, int],
        crop_box: list[int],
        orig_size: tuple[int, int],
    ) -> MaskData:
        predictor, model = self.predictor, self.predictor.model
        input_size = predictor.input_size
        coords = predictor.transform.apply_coords(points, crop_size)
        in_points = torch.as_tensor(coords, device=predictor.device)[:, None, :]  # (B, 1, 2)
        in_labels = torch.ones(in_points.shape[:2], dtype=torch.int, device=predictor.device)
        prepared, image_pe = predictor.prepared, predictor.image_pe
        assert input_size is not None and prepared is not None and image_pe is not None
        # Masks are made only for outputs that pass the predicted-IoU filter.
        min_iou = self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else -float("inf")
        with predictor.decode_autocast():
            sparse, _ = model.prompt_encoder(points=(in_points, in_labels), boxes=None, masks=None)
            low_res, iou_preds, index = model.mask_decoder.predict_confident(
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                prepared=prepared,
                multimask_output=True,
                min_iou=min_iou,
            )
        low_res, iou_preds = low_res.float(), iou_preds[index[:, 0], index[:, 1]].float()
        point_rows = torch.as_tensor(points)[index[:, 0]]
        out = _empty()
        h, w = crop_size
        size = model.img_size
        chunk = max(1, CHUNK_BYTES // (4 * (size * size + h * w)))
        for start in range(0, len(low_res), chunk):
            logits = model.postprocess_masks(
                low_res[start : start + chunk, None], input_size, crop_size
            )
            local, rles, boxes, stability = self._filter_chunk(
                logits[:, 0].float(), crop_box, orig_size
            )
            crop_boxes = torch.tensor([crop_box] * len(rles), dtype=torch.long).reshape(-1, 4)
            rows = local + start
            out.cat(
                MaskData(
                    rles=rles,
                    boxes=boxes,
                    iou_preds=iou_preds[rows],
                    points=point_rows[rows],
                    stability_score=stability,
                    crop_boxes=crop_boxes,
                )
            )
        return out

    def _filter_chunk(
        self, logits: torch.Tensor, crop_box: list[int], orig_size: tuple[int, int]
    ) -> tuple[torch.Tensor, list[dict[str, Any]], torch.Tensor, torch.Tensor]:
        """Stability filter, threshold, crop-edge filter and RLE for (N, h, w) crop logits.

        Returns the kept rows' indices into `logits`, their RLEs in the full image, their
        boxes (XYXY, crop frame) and stability scores.
        """
        threshold = self.predictor.model.mask_threshold
        stability = M.calculate_stability_score(logits, threshold, self.stability_score_offset)
        local = torch.arange(len(logits))
        if self.stability_score_thresh > 0.0:
            local = torch.nonzero(stability >= self.stability_score_thresh).flatten()
        binary = logits[local] > threshold
        boxes = M.batched_mask_to_box(binary)
        orig_h, orig_w = orig_size
        near_edge = M.is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        if near_edge.any():
            local, binary, boxes = local[~near_edge], binary[~near_edge], boxes[~near_edge]
        rles = M.mask_to_rle(M.uncrop_masks(binary, crop_box, orig_h, orig_w))
        return local, rles, boxes, stability[local]

    @staticmethod
    def postprocess_small_regions(
        mask_data: MaskData, min_area: int, nms_thresh: float
    ) -> MaskData:
        """Remove small holes and islands from every mask, then NMS again, preferring masks
        that did not change. Changed masks that survive get their new RLE and box."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        new_masks, scores = [], []
        for rle in mask_data["rles"]:
            mask = M.rle_to_mask(rle)
            mask, changed_holes = M.remove_small_regions(mask, min_area, mode="holes")
            mask, changed_islands = M.remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(torch.as_tensor(mask))
            scores.append(0.0 if (changed_holes or changed_islands) else 1.0)
        masks = torch.stack(new_masks)
        boxes = M.batched_mask_to_box(masks)
        keep = M.batched_nms(
            boxes.float(), torch.tensor(scores), torch.zeros(len(boxes)), nms_thresh
        )
        for i in keep.tolist():
            if scores[i] == 0.0:
                mask_data["rles"][i] = M.mask_to_rle(masks[i : i + 1])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data


def _empty() -> MaskData:
    """A MaskData with the generator's columns and no rows."""
    return MaskData(
        rles=[],
        boxes=torch.zeros(0, 4, dtype=torch.long),
        iou_preds=torch.zeros(0),
        points=torch.zeros(0, 2, dtype=torch.float64),
        stability_score=torch.zeros(0),
        crop_boxes=torch.zeros(0, 4, dtype=torch.long),
    )

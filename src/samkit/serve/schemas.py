"""Request bodies of the annotator API (pydantic models, shown in the OpenAPI schema).

Coordinates are image pixels of the original image: points (X, Y), boxes XYXY. Non-finite
numbers are refused here; shapes, labels and image bounds by `samkit.prompts.validate`.
A phrase is stripped here and must keep 1 to 500 characters; the text encoder refuses one of
more tokens than it reads.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..automatic import SamAutomaticMaskGenerator

# The generator's own defaults, read from its signature instead of written out a second time.
_AMG_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(SamAutomaticMaskGenerator.__init__).parameters.items()
}
MAX_TEXT = 500  # characters of a phrase: a few sentences, far under what a request may carry
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]
MASK_RLE = 'COCO RLE of the whole image: {"size": [H, W], "counts": str or [int]}'
# Where a mask came from (project.py): SOURCES, then IMPORTED and EDITED (a page re-creating a
# deleted annotation, on undo, sends the source it had).
Source = Literal["manual", "text", "proposal", "imported", "edited"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MaskRef(_Body):
    """Candidate `index` of the earlier prediction named `token` (its low-res logits)."""

    token: str = Field(max_length=64)
    index: int = Field(ge=0)


class PredictRequest(_Body):
    points: list[tuple[float, float]] | None = Field(
        default=None, max_length=256, description="(X, Y) pixels"
    )
    labels: list[int] | None = Field(
        default=None, max_length=256, description="1 foreground, 0 background, per point"
    )
    box: tuple[float, float, float, float] | None = Field(default=None, description="XYXY")
    mask_input: MaskRef | None = Field(
        default=None, description="feed back a previous prediction's candidate as a mask prompt"
    )
    mask: dict[str, Any] | None = Field(
        default=None,
        description=f"or feed back an edited mask as the mask prompt: {MASK_RLE}; at most one "
        "of mask_input and mask",
    )
    text: Phrase | None = Field(
        default=None,
        description="a phrase naming the object, alone or with the other prompts; only for a "
        "model with a text head (GET /api/info: text). Send multimask false with it",
    )
    multimask: bool = Field(default=True, description="3 candidates (True) or 1")


class EverythingRequest(_Body):
    points_per_side: int = Field(default=_AMG_DEFAULTS["points_per_side"], ge=1, le=64)
    pred_iou_thresh: float = Field(default=_AMG_DEFAULTS["pred_iou_thresh"], ge=0.0, le=1.0)
    stability_score_thresh: float = Field(
        default=_AMG_DEFAULTS["stability_score_thresh"], ge=0.0, le=1.0
    )
    box_nms_thresh: float = Field(default=_AMG_DEFAULTS["box_nms_thresh"], ge=0.0, le=1.0)
    min_mask_region_area: int = Field(default=_AMG_DEFAULTS["min_mask_region_area"], ge=0)
    max_masks: int = Field(default=200, ge=1, le=1000, description="largest-IoU masks returned")
    job: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="a new id for this job: GET /api/everything/{job} reads its progress, "
        "DELETE cancels it",
    )


class AnnotationCreate(_Body):
    label: str = Field(max_length=100)
    segmentation: dict[str, Any] = Field(description=MASK_RLE)
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: list[tuple[float, float]] | None = Field(default=None, max_length=256)
    text: Phrase | None = Field(default=None, description="the phrase the mask was asked with")
    source: Source | None = Field(
        default=None,
        description="the stage that made the mask: clicks or a box (manual), a phrase (text), "
        "an accepted segment-everything proposal (proposal), a COCO or SA-1B file (imported), "
        "painted by hand (edited); default text with a text, else manual",
    )


class AnnotationUpdate(_Body):
    """What to change (at least one field); a new mask makes the source "edited" unless
    `source` says otherwise (undo sends the mask and the source it had)."""

    label: str | None = Field(default=None, max_length=100)
    segmentation: dict[str, Any] | None = Field(default=None, description=f"a new mask: {MASK_RLE}")
    source: Source | None = None


class LabelEntry(_Body):
    name: str = Field(max_length=100)
    color: str | None = Field(default=None, description="#rrggbb; a palette colour if left out")


class LabelSetUpdate(_Body):
    labels: list[LabelEntry] = Field(
        max_length=99, description="the whole set, in order (keys 1-9 choose the first nine)"
    )


class StateUpdate(_Body):
    state: Literal["new", "in progress", "done", "skipped"]


class ExportRequest(_Body):
    format: Literal["coco", "sa1b", "png", "yolo"] = "coco"

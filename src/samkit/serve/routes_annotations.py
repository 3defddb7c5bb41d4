"""The annotator API's annotation routes (`create_app` includes them):

    GET    /api/images/{id}/annotations                  list          POST  add one
    PATCH  /api/images/{id}/annotations/{n}              relabel, or a new mask (source
                                                         "edited"), or a source (undo)
    DELETE /api/images/{id}/annotations/{n}              remove one
    GET    /api/images/{id}/annotations/{n}/polygons     its outline: one polygon per part,
                                                         with its holes (read only)

Errors raise ValueError (400) or `NotFound` (404), which the app's handlers answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from ..masks import mask_to_polygons
from ..rle import decode_coco_rle
from .project import Project
from .schemas import AnnotationCreate, AnnotationUpdate

MAX_TOLERANCE = 10.0  # pixels a polygon's outline may stray from the mask's, at most
TOLERANCE = "pixels the outline may stray from the mask's (Douglas-Peucker); 0 keeps every corner"


def annotation_routes(project: Project) -> APIRouter:
    """The routes that read and change `project`'s annotations."""
    router = APIRouter()
    one = "/api/images/{image_id}/annotations/{ann_id}"

    @router.get("/api/images/{image_id}/annotations")
    def list_annotations(image_id: str) -> list[dict[str, Any]]:
        return project.annotations(image_id)

    @router.post("/api/images/{image_id}/annotations", status_code=201)
    def add_annotation(image_id: str, body: AnnotationCreate) -> dict[str, Any]:
        return project.add_annotation(image_id, body.model_dump(exclude_none=True))

    @router.patch(one)
    def change_annotation(image_id: str, ann_id: int, body: AnnotationUpdate) -> dict[str, Any]:
        """Change the label, the mask (COCO RLE of the whole image; its area and box follow,
        and its source becomes "edited" unless `source` is given) or the source."""
        return project.update_annotation(
            image_id, ann_id, body.label, segmentation=body.segmentation, source=body.source
        )

    @router.delete(one, status_code=204)
    def delete_annotation(image_id: str, ann_id: int) -> Response:
        project.delete_annotation(image_id, ann_id)
        return Response(status_code=204)

    @router.get(f"{one}/polygons")
    def polygons(
        image_id: str,
        ann_id: int,
        tolerance: Annotated[float, Query(ge=0.0, le=MAX_TOLERANCE, description=TOLERANCE)] = 1.0,
    ) -> dict[str, Any]:
        """The annotation's outline: one polygon per 8-connected part of its mask, its
        exterior ring and its holes' rings as [[x, y], ...] through the centres of border
        pixels (`samkit.masks.mask_to_polygons`); parts of 1 or 2 pixels have none."""
        mask = decode_coco_rle(project.annotation(image_id, ann_id)["segmentation"])
        found = mask_to_polygons(mask, tolerance=tolerance)
        return {
            "tolerance": tolerance,
            "polygons": [
                {"exterior": p.exterior.tolist(), "holes": [h.tolist() for h in p.holes]}
                for p in found
            ],
        }

    return router

"""The HTTP API and the annotator page. Thin: parse, call `Project`/`Engine`, format.

Endpoints (all JSON unless said; the OpenAPI schema is at /openapi.json):
    GET    /                                  the annotator page (static files under /static)
    GET    /api/info                          model, whether it takes text, limits, formats
    GET    /api/images                        images of the folder, with annotation counts and
                                              states (?state= filters, ?q= searches file names)
    PUT    /api/images/{id}/state             mark done or skipped (new / in progress: unmark)
    GET    /api/labels                        the label set      PUT  replace it (add, rename, ...)
    GET    /api/progress                      images per state, objects per label
    POST   /api/images                        upload images (multipart fields "file")
    GET    /api/images/{id}                   one image's info
    GET    /api/images/{id}/image             the image as the model sees it (JPEG, upright)
    POST   /api/images/{id}/embed             compute (or find cached) the embedding
    POST   /api/images/{id}/predict           prompts (points, box, text, a mask) -> 3 (or 1) masks
    POST   /api/images/{id}/everything        automatic mask generation ("job": an id to follow)
    GET    /api/everything/{job}              its progress (points done of all)  DELETE cancel it
    GET    /api/images/{id}/annotations       list, add, change (label, mask), delete, and an
                                              object's polygons (routes_annotations.py)
    POST   /api/export                        write the folder's export under .samkit/export
    GET    /api/export/{format}.zip           the same export as a zip download
Errors are 4xx JSON `{"detail": "what was wrong and what to do"}`.

Only the annotator's own page may call it (`guard.RequestGuard`): the Host header must name
this server, an Origin must be its own, and POST/PATCH/DELETE carry the header `X-Samkit: 1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, HTTPException, Request, Response, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..io import DEFAULT_MAX_PIXELS, decode_rle
from ..modeling import Sam
from ..rle import mask_to_rle
from .engine import Cancelled, Engine
from .export import FORMATS, export_project, remove_stale_temporaries
from .guard import HEADER, RequestGuard, allowed_names
from .importer import import_router
from .labelset import STATES, Progress, state_of
from .limits import BodyLimit
from .project import NotFound, Project, source_counts
from .routes_annotations import annotation_routes
from .schemas import (
    EverythingRequest,
    ExportRequest,
    LabelSetUpdate,
    PredictRequest,
    StateUpdate,
)

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_BODY = 64 << 20  # 64 MiB: a large camera JPEG, or the RLE of a 200 MP mask
DEFAULT_MAX_UPLOAD_FILES = 16  # images per upload request (the page sends one at a time)


def create_app(
    folder: str | Path,
    model: Sam,
    *,
    model_name: str = "custom",
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    cache_bytes: int = 1 << 30,
    allowed_hosts: Iterable[str] = (),
    max_upload_files: int = DEFAULT_MAX_UPLOAD_FILES,
    max_upload_bytes: int | None = None,
    labels: list[dict[str, str]] | None = None,
) -> FastAPI:
    """The annotator app for the images in `folder`, prompting `model`.

    allowed_hosts: host names (or bind addresses) the server answers to besides 127.0.0.1,
      localhost and [::1]; requests naming another host get 421 (DNS rebinding).
    max_upload_files, max_upload_bytes: images per upload request, and their bytes in all
      (default `max_body_bytes`).
    labels: a label set (`labelset.check_labels`) to store as the project's, replacing its own.
    """
    upload_bytes = max_body_bytes if max_upload_bytes is None else max_upload_bytes
    if max_upload_files < 1 or upload_bytes < 1:
        raise ValueError(
            f"max_upload_files and max_upload_bytes must be >= 1; got {max_upload_files} "
            f"and {upload_bytes}"
        )
    project = Project(folder, max_pixels=max_pixels)
    progress = Progress(project.state_dir)
    if labels is not None:
        progress.set_labels(labels)
    remove_stale_temporaries(project.state_dir / "export")  # of an export a kill cut short
    engine = Engine(model, cache_bytes=cache_bytes)
    # The header as an API key in the OpenAPI schema, so that a viewer of the schema (Swagger
    # UI: "Authorize", value 1) sends it; `RequestGuard` is what requires it.
    write_header = APIKeyHeader(
        name=HEADER, auto_error=False, description="1, on every POST, PATCH and DELETE"
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(engine.close)  # lets a running "segment everything" finish

    app = FastAPI(
        title="samkit annotator",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc load their scripts from a CDN (blank offline, and a
        # third party's code on the page that may write): off. /openapi.json stays.
        docs_url=None,
        redoc_url=None,
        version=__version__,
        description="Segment Anything over HTTP: embed once, then prompt for masks.",
        dependencies=[Security(write_header)],
    )
    app.state.project, app.state.engine = project, engine
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.allowed_hosts = allowed_names(allowed_hosts)
    app.add_middleware(RequestGuard, allowed_hosts=app.state.allowed_hosts)  # runs first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(import_router(project, progress))  # POST /api/import (importer.py)
    app.include_router(annotation_routes(project))  # /api/images/{id}/annotations...

    @app.exception_handler(ValueError)
    async def _bad_input(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The inputs are left out: they may be huge, or NaN, which JSON cannot carry.
        errors = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        text = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "model": model_name,
            "model_input_size": model.image_encoder.img_size,
            "text": engine.text_encoder is not None,  # predict takes "text"
            "text_encoder": engine.text_encoder,
            "max_body_bytes": max_body_bytes,
            "max_pixels": max_pixels,
            "max_upload_files": max_upload_files,
            "max_upload_bytes": upload_bytes,
            "cache_bytes": engine.embeddings.max_bytes,
            "write_header": f"{HEADER}: 1",
            "formats": list(FORMATS),
        }

    def describe(image_id: str, marks: dict[str, str] | None = None) -> dict[str, Any]:
        entry = project.get(image_id)
        width, height = project.size(image_id)
        anns = project.annotations(image_id)
        count = len(anns)
        marks = progress.marks() if marks is None else marks
        return {
            "id": entry.id,
            "file_name": entry.file_name,
            "width": width,
            "height": height,
            "annotations": count,
            "state": state_of(marks.get(image_id), count),
            "embedded": project.revision(image_id) in engine.embeddings,
            "sources": source_counts(anns),
        }

    @app.get("/api/images")
    def list_images(state: str | None = None, q: str = "") -> list[dict[str, Any]]:
        """The images; `state` keeps those in one state, `q` those whose file name has it."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        marks = progress.marks()
        found = [
            describe(e.id, marks) for e in project.images() if q.lower() in e.file_name.lower()
        ]
        return [im for im in found if state is None or im["state"] == state]

    @app.put("/api/images/{image_id}/state")
    def mark(image_id: str, body: StateUpdate) -> dict[str, Any]:
        progress.mark(project.get(image_id).id, body.state)
        return describe(image_id)

    @app.get("/api/labels")
    def get_labels() -> list[dict[str, str]]:
        return progress.labels()

    @app.put("/api/labels")
    def put_labels(body: LabelSetUpdate) -> list[dict[str, str]]:
        return progress.set_labels([entry.model_dump(exclude_none=True) for entry in body.labels])

    @app.get("/api/progress")
    def get_progress() -> dict[str, Any]:
        states = dict.fromkeys(STATES, 0)
        per_label = {entry["name"]: 0 for entry in progress.labels()}
        for im in list_images():
            states[im["state"]] += 1
            for ann in project.annotations(im["id"]):
                per_label[ann["label"]] = per_label.get(ann["label"], 0) + 1
        return {"states": states, "labels": per_label}

    @app.post("/api/images", status_code=201)
    def upload(file: list[UploadFile] = File(...)) -> list[dict[str, Any]]:  # noqa: B008
        """Store one or more images (repeat the field "file"); all or none are stored."""
        total = sum(f.size or 0 for f in file)
        if len(file) > max_upload_files or total > upload_bytes:
            raise HTTPException(
                413,
                f"an upload request may carry at most {max_upload_files} images and "
                f"{upload_bytes:,} bytes in all; got {len(file)} images, {total:,} bytes: "
                "send fewer or smaller images per request",
            )
        entries = project.add_uploads([f.file.read() for f in file], [f.filename for f in file])
        return [describe(entry.id) for entry in entries]

    @app.get("/api/images/{image_id}")
    def image_info(image_id: str) -> dict[str, Any]:
        return describe(image_id)

    @app.get("/api/images/{image_id}/image", response_class=Response)
    def image_pixels(image_id: str) -> Response:
        buf = io.BytesIO()
        Image.fromarray(project.load(image_id)).save(buf, format="JPEG", quality=92)
        return Response(buf.getvalue(), media_type="image/jpeg")

    @app.post("/api/images/{image_id}/embed")
    def embed(image_id: str) -> dict[str, Any]:
        start = time.perf_counter()
        _, cached = engine.embed(project.revision(image_id), lambda: project.load(image_id))
        return {"cached": cached, "seconds": time.perf_counter() - start}

    @app.post("/api/images/{image_id}/predict")
    def predict(image_id: str, body: PredictRequest) -> dict[str, Any]:
        if body.points is None and body.box is None and body.text is None:
            raise ValueError("give at least one prompt: points (with labels), a box or a text")
        ref = body.mask_input
        if ref is not None and body.mask is not None:
            raise ValueError(
                "give mask_input (a previous prediction's candidate) or mask (an edited mask of "
                "the whole image), not both"
            )
        mask = None
        if body.mask is not None:  # an edited mask: the whole image's
            width, height = project.size(image_id)
            mask = decode_rle(body.mask, "mask", (height, width))
        pred = engine.predict(
            project.revision(image_id),
            lambda: project.load(image_id),
            point_coords=None if body.points is None else np.array(body.points, dtype=float),
            point_labels=None if body.labels is None else np.array(body.labels),
            box=None if body.box is None else np.array(body.box, dtype=float),
            mask_from=None if ref is None else (ref.token, ref.index),
            mask=mask,
            multimask_output=body.multimask,
            text=body.text,
        )
        rles = mask_to_rle(torch.from_numpy(pred.masks))
        masks = [
            {
                "segmentation": rle,
                "predicted_iou": float(score),
                "stability_score": float(stab),
                "area": int(mask.sum()),
            }
            for rle, score, stab, mask in zip(
                rles, pred.scores, pred.stability, pred.masks, strict=True
            )
        ]
        best = int(np.argmax(pred.scores))
        return {"token": pred.token, "masks": masks, "best": best, "model_ms": pred.seconds * 1e3}

    @app.post("/api/images/{image_id}/everything")
    async def everything(image_id: str, body: EverythingRequest) -> dict[str, Any]:
        # Async: the request waits for the engine's AMG queue without holding one of the
        # request threads that predicts run on (clicks come first).
        options = body.model_dump()
        max_masks, job_id = options.pop("max_masks"), options.pop("job")
        start = time.perf_counter()
        revision = await run_in_threadpool(project.revision, image_id)
        load = lambda: project.load(image_id)  # noqa: E731
        job = engine.submit_everything(revision, load, job_id=job_id, **options)
        try:
            records = await asyncio.wrap_future(job)
        except Cancelled:
            seconds = time.perf_counter() - start
            return {"masks": [], "found": 0, "cancelled": True, "seconds": seconds}
        records.sort(key=lambda r: -r["predicted_iou"])
        keys = ("segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords")
        masks = [{k: r[k] for k in keys} for r in records[:max_masks]]
        seconds = time.perf_counter() - start
        return {"masks": masks, "found": len(records), "cancelled": False, "seconds": seconds}

    def no_job(job_id: str) -> NotFound:
        return NotFound(f"no segment-everything job {job_id!r} is queued or running")

    @app.get("/api/everything/{job_id}")
    def everything_progress(job_id: str) -> dict[str, Any]:
        job = engine.progress(job_id)
        if job is None:
            raise no_job(job_id)
        return {"state": job.state, "done": job.done, "total": job.total}

    @app.delete("/api/everything/{job_id}", status_code=204)
    def cancel_everything(job_id: str) -> Response:
        """Stop the job before its next batch of points; its request answers cancelled."""
        if not engine.cancel(job_id):
            raise no_job(job_id)
        return Response(status_code=204)

    def label_names() -> list[str]:
        return [entry["name"] for entry in progress.labels()]

    @app.post("/api/export")
    def export(body: ExportRequest) -> dict[str, Any]:
        summary = export_project(
            project, body.format, project.state_dir / "export" / body.format, labels=label_names()
        )
        files = sorted(p.relative_to(project.folder).as_posix() for p in summary.folder.rglob("*"))
        return {
            "format": summary.format,
            "folder": summary.folder.relative_to(project.folder).as_posix(),
            "files": [f for f in files if (project.folder / f).is_file()],
            "images": summary.images,
            "annotations": summary.annotations,
            "labels": summary.labels,
            "skipped": [
                {"file_name": k.file_name, "annotation": k.annotation, "reason": k.reason}
                for k in summary.skipped
            ],
        }

    @app.get("/api/export/{fmt}.zip", response_class=Response)
    def export_zip(fmt: str) -> Response:
        if fmt not in FORMATS:
            raise HTTPException(404, f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
        buf = io.BytesIO()
        # Built in a temporary folder: a GET changes nothing (a link on any web page can send one).
        with tempfile.TemporaryDirectory() as tmp:
            summary = export_project(project, fmt, Path(tmp) / fmt, labels=label_names())
            folder = summary.folder
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(folder).as_posix())
        headers = {
            "Content-Disposition": f'attachment; filename="samkit-{fmt}.zip"',
            # Annotations left out (POST /api/export lists them with the reasons).
            "X-Samkit-Skipped": str(len(summary.skipped)),
        }
        return Response(buf.getvalue(), media_type="application/zip", headers=headers)

    return app

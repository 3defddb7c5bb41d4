"""The image encoder on another runtime: `SamPredictor(model, backend="openvino")` (or
"onnxruntime") runs the encoder, the costly part of `set_image`, as an ONNX graph on that
runtime, and keeps the prompt encoder and mask decoder in torch. The graph is exported once per
model weights, encoder precision and runtime into samkit's cache folder
(`onnx/<weights digest>.onnx`), then reused.

Precision: "fp32" runs the graph as exported; "bf16" asks OpenVINO for bf16 inference (the
runtime's own kernels, fastest on CPUs with AVX-512 BF16 or AMX); onnxruntime has no bf16 on
CPU, so it is refused there. The int8 encoder of `samkit.load(..., precision="int8")` is not
exported: its Linear layers are torch's int8 kernels.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .modeling import Sam

BACKENDS = ("torch", "onnxruntime", "openvino")
CHOICES = (*BACKENDS, "auto")  # what SamPredictor takes; "auto": see `samkit.backend_choice`
INPUT, OUTPUT = "image", "image_embeddings"


class _Encoder(nn.Module):
    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.encoder = model.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


def check_backend(backend: str, precision: str, device: torch.device) -> None:
    """ValueError unless `backend` can run an encoder of `precision` on `device` ("auto"
    always can: it picks one that does)."""
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {', '.join(CHOICES)}; got {backend!r}")
    if backend in ("torch", "auto"):
        return
    if device.type != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU; the model is on {device}")
    if precision == "int8":
        raise ValueError(
            f"backend {backend!r} runs an fp32 or bf16 encoder; this model's Linear layers are "
            "int8 (load it with precision fp32, or use backend 'torch')"
        )
    if backend == "onnxruntime" and precision != "fp32":
        raise ValueError(
            f"onnxruntime has no {precision} encoder on the CPU: use precision fp32, or backend "
            "'openvino'"
        )


class OnnxEncoder:
    """`model`'s image encoder as an ONNX graph on `backend`; called like the encoder on a
    preprocessed (B, 3, S, S) float tensor, it returns (B, C, He, We) float32 embeddings."""

    def __init__(self, model: Sam, backend: str, precision: str) -> None:
        from .export.sessions import open_session

        check_backend(backend, precision, model.device)
        self.backend = backend
        path = exported_encoder(model)
        self._session = open_session(
            path, backend, threads=torch.get_num_threads(), precision=precision
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        images = batch.detach().float().cpu().numpy()
        out = [self._session.run([OUTPUT], {INPUT: image[None]})[0] for image in images]
        return torch.from_numpy(np.concatenate(out)).to(batch.device)


def exported_encoder(model: Sam) -> Path:
    """The ONNX file of `model`'s image encoder in samkit's cache, exported on first use (into
    a folder of its own, renamed into place when complete: a crash leaves no partial file)."""
    from .embedding_cache import model_digest
    from .export.onnx import DEFAULT_OPSET
    from .weights_cache import cache_dir

    final = cache_dir() / "onnx" / model_digest(model.image_encoder)[:32]
    path = final / "encoder.onnx"
    if path.is_file():
        return path
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
    try:
        size = model.image_encoder.img_size
        example = torch.zeros(1, 3, size, size, device=model.device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python values
            torch.onnx.export(
                _Encoder(model).eval(),
                (example,),
                str(work / "encoder.onnx"),
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=DEFAULT_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        try:
            os.rename(work, final)
        except OSError:  # another process exported it meanwhile
            if not path.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path

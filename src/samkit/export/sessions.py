"""The runtimes `OnnxPredictor` runs its graphs on, behind one small interface: onnxruntime
and OpenVINO (`pip install openvino`), both reading the same ONNX files.

A `Session` runs one graph: `run(outputs, feeds)` returns the named outputs (all of them for
None) as numpy arrays, `inputs` maps each input's name to its static width along axis 1 (None
where that axis is dynamic), and `metadata` holds the graph's metadata (samkit's exporter
records the model's input size, mask threshold and image format there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
# OpenVINO's compiled graphs, by (file, its mtime and size, threads, precision), kept for the
# process's life and shared by the sessions that open the same graph the same way. Freeing
# them in a process that also runs torch left it to crash (SIGSEGV) on its next signal, such
# as Ctrl-C; kept, each graph costs its memory once.
_COMPILED: dict[tuple[Any, ...], tuple[Any, Any, Any, threading.Lock]] = {}
_LOCK = threading.Lock()
# OpenVINO's inference precisions by the names samkit uses; "auto" leaves it to OpenVINO,
# which picks bf16 on CPUs with AVX-512 BF16 or AMX and f32 elsewhere.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


class Session(Protocol):
    inputs: dict[str, int | None]
    metadata: dict[str, str]

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]: ...


class OnnxRuntimeSession:
    def __init__(
        self, path: str | os.PathLike[str], threads: int | None, providers: list[str] | None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # No busy-waiting between runs: its threads would take the cores from torch's, which
        # decodes the prompts (backend) or runs next to it in the same process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            os.fspath(path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.inputs = {i.name: _width(i.shape) for i in self._session.get_inputs()}
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]:
        return list(self._session.run(None if outputs is None else list(outputs), feeds))


class OpenVinoSession:
    def __init__(self, path: str | os.PathLike[str], threads: int | None, precision: str) -> None:
        import openvino as ov

        if precision != "auto" and precision not in OPENVINO_PRECISIONS:
            raise ValueError(
                f"OpenVINO precision must be auto, {', '.join(OPENVINO_PRECISIONS)}; "
                f"got {precision!r}"
            )
        config: dict[str, Any] = {}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_PRECISIONS[precision]
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, threads, precision)
        with _LOCK:
            if key not in _COMPILED:
                core = ov.Core()
                model = core.read_model(os.fspath(path))
                compiled = core.compile_model(model, "CPU", config)
                _COMPILED[key] = (
                    model,
                    compiled,
                    compiled.create_infer_request(),
                    threading.Lock(),
                )
        model, self._compiled, self._request, self._busy = _COMPILED[key]
        self.inputs = {}
        for port in model.inputs:
            shape = port.get_partial_shape()
            static = shape.rank.is_static and len(shape) > 1 and shape[1].is_static
            self.inputs[port.get_any_name()] = shape[1].get_length() if static else None
        framework = (
            model.get_rt_info(["framework"]).astype(dict)
            if model.has_rt_info(["framework"])
            else {}
        )
        self.metadata = {key: value.astype(str) for key, value in framework.items()}

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]:
        with self._busy:  # sessions of one graph share its infer request
            result = self._request.infer(feeds)
        names = outputs or [port.get_any_name() for port in self._compiled.outputs]
        by_name = {port.get_any_name(): value for port, value in result.items()}
        return [np.asarray(by_name[name]) for name in names]


def _width(shape: Sequence[Any]) -> int | None:
    return shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None


def open_session(
    path: str | os.PathLike[str],
    runtime: str,
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    precision: str = "auto",
) -> Session:
    """A `Session` of the graph at `path` on `runtime` ("onnxruntime" or "openvino").
    providers: onnxruntime's execution providers (default CPU); precision: OpenVINO's
    inference precision, "auto", "fp32" or "bf16" (onnxruntime runs the graph's own)."""
    if runtime == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise ValueError(
                f"onnxruntime runs a graph in its own precision; got precision={precision!r} "
                "(use an int8 graph from `samkit export-onnx --int8`, or runtime='openvino')"
            )
        return OnnxRuntimeSession(path, threads, providers)
    if runtime == "openvino":
        if providers is not None:
            raise ValueError("providers are onnxruntime's; OpenVINO runs on its CPU device")
        return OpenVinoSession(path, threads, precision)
    raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")

"""Export to ONNX (needs the `onnx` extra) and the onnxruntime backend (`runtime`: numpy,
pillow and onnxruntime only, no torch). Names are imported on first use."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_EXPORTS = {
    **dict.fromkeys(
        ("SamOnnxModel", "export_decoder", "export_encoder", "quantize_dynamic_int8"), ".onnx"
    ),
    "OnnxPredictor": ".runtime",
}
__all__ = [
    "OnnxPredictor",
    "SamOnnxModel",
    "export_decoder",
    "export_encoder",
    "quantize_dynamic_int8",
]
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .onnx import SamOnnxModel, export_decoder, export_encoder, quantize_dynamic_int8
    from .runtime import OnnxPredictor

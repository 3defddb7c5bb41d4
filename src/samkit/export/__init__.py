"""Export to ONNX (needs the `onnx` extra) and the onnxruntime backend."""

from .onnx import SamOnnxDecoder, export_decoder, export_encoder

__all__ = ["SamOnnxDecoder", "export_decoder", "export_encoder"]

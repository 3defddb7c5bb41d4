"""`segment_anything.utils.onnx`: `SamOnnxModel` (from `samkit.export.onnx`).

Exportable with `torch.onnx.export` as Meta's `scripts/export_onnx_model.py` does.
"""

from ..export.onnx import SamOnnxModel

__all__ = ["SamOnnxModel"]

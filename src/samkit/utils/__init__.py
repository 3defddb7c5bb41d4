"""Meta's `segment_anything.utils` at the same dotted paths: `amg`, `transforms`, `onnx`.

Thin modules: each re-exports samkit's own implementation under the official names.
"""

"""`segment_anything.build_sam`: the model builders and registry (from `samkit.build`)."""

from .build import build_sam, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry

__all__ = [
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "sam_model_registry",
]

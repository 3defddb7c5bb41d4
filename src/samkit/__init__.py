"""samkit: Segment Anything as real software. Drop-in for Meta's `segment_anything`."""

from .automatic import SamAutomaticMaskGenerator
from .build import (
    build_sam,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    sam_model_registry,
)
from .loading import load
from .predictor import SamPredictor

__version__ = "0.1.0"

__all__ = [
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "__version__",
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "load",
    "sam_model_registry",
]

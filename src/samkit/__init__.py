"""samkit: Segment Anything as real software. Drop-in for Meta's `segment_anything`.

The public names below are imported on first use, so `import samkit.export.runtime` (the
onnxruntime predictor) works without torch.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes

__version__ = "0.1.0"

_EXPORTS = {
    "SamAutomaticMaskGenerator": ".automatic",
    "SamPredictor": ".predictor",
    "build_sam": ".build",
    "build_sam_vit_b": ".build",
    "build_sam_vit_h": ".build",
    "build_sam_vit_l": ".build",
    "load": ".loading",
    "sam_model_registry": ".build",
}
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
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)

if TYPE_CHECKING:
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

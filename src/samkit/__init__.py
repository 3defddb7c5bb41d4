"""samkit: Segment Anything as real software. Drop-in for Meta's `segment_anything`.

The public names below are imported on first use, so `import samkit.export.runtime` (the
onnxruntime predictor) works without torch.
"""

import sys
import types
from typing import TYPE_CHECKING, Any

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


class _Package(types.ModuleType):
    """samkit's module type: importing the submodule `samkit.build_sam` does not replace the
    exported builder function of the same name. In Meta's package the function shadows the
    submodule (its `__init__` imports it after the submodule), so `segment_anything.build_sam`
    is the function; here too, and the submodule stays importable by its dotted name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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

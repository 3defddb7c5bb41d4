"""`segment_anything.automatic_mask_generator` (from `samkit.automatic`)."""

from .automatic import SamAutomaticMaskGenerator

__all__ = ["SamAutomaticMaskGenerator"]

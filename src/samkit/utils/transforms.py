"""`segment_anything.utils.transforms`: `ResizeLongestSide` (from `samkit.transforms`)."""

from ..transforms import ResizeLongestSide

__all__ = ["ResizeLongestSide"]

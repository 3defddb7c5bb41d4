"""Image input: one loader from paths, bytes, PIL images and arrays to HxWx3 uint8 RGB."""

from .images import DEFAULT_MAX_PIXELS, ImageError, image_size, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "image_size", "load_image"]

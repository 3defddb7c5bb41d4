"""The one image loader: any source -> an HxWx3 uint8 RGB array, as SAM consumes it.

Every entry point (CLI, predictor helpers, servers, automatic mask generation) goes through
`load_image`, so a file, its bytes, a PIL image and a numpy array of the same picture give the
same array, and every bad input fails the same way: with an `ImageError` that names the input,
says what was wrong and what to do.

Conversion rules, shared by files, bytes and PIL images (numpy arrays use the dtype rules):
- EXIF orientation is applied, so the array is upright as an image viewer shows it.
- Alpha is dropped, not composited: the official SAM pipeline feeds the RGB channels of an
  RGBA image, so samkit does too. Palette images with transparency are expanded, then dropped.
- 16-bit data is scaled by its bit depth (value >> 8), never clipped: 65535 -> 255, 256 -> 1.
- 32-bit integer images (mode "I") are taken as 16-bit when every value fits in 0..65535 (how
  Pillow holds 16-bit PGM/TIFF data), otherwise as 31-bit (value >> 23); negatives become 0.
- Float data (mode "F", float arrays): when the maximum is <= 1.0 it is taken as 0..1 and scaled
  by 255, otherwise clipped to 0..255; NaN or inf is an error. One rule for both, so
  `load_image(a)` equals `load_image(Image.fromarray(a))`.
- Bilevel and gray images repeat their channel three times; CMYK, YCbCr and other colour
  modes go through Pillow's conversion to RGB.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np
from PIL import Image, UnidentifiedImageError

# File suffixes taken as images when a folder is searched (runner inputs, SA-1B folders).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"}
)

# 200 megapixels: 8x a 24 MP (6000x4000) camera frame and 2x a 100 MP aerial frame, while the
# decoded RGB array stays at 600 MB. Pillow's own default (Image.MAX_IMAGE_PIXELS, 89.5 MP, an
# error only above 179 MP) would turn away large aerial and scanned images, which are a
# real SAM use case (automatic mask generation over tiles). The check reads the header only,
# so a file claiming billions of pixels fails before anything is decoded.
DEFAULT_MAX_PIXELS = 200_000_000

ImageSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray"
)

_ORIENTATION_TAG = 0x0112  # EXIF "Orientation", values 1..8
# Pillow's decompression-bomb limit is a module global; it is lifted (briefly, under this lock)
# only to re-open a header that Pillow refused, so that `max_pixels` is the one limit that decides.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(ValueError):
    """An input could not be turned into an image: missing, unreadable, corrupt or too large."""


def load_image(
    source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Return `source` as an HxWx3 uint8 C-contiguous RGB array (channel order R, G, B).

    source: a path (str or os.PathLike), the encoded content of an image file (bytes,
        bytearray or memoryview), a PIL.Image.Image, or a numpy array of shape HxW, HxWx1,
        HxWx3 or HxWx4 (alpha dropped) with dtype uint8, bool (-> 0/255), uint16 (>> 8),
        another integer type with values in 0..255, or float (see the module docstring).
    max_pixels: refuse images with more than this many pixels (width * height); checked from
        the header, before decoding. None disables the check.
    name: how error messages name the input (default: the path, "<bytes>", "<PIL image>" or
        "<array>").

    A uint8 HxWx3 C-contiguous array is returned as is (not copied), so it shares memory
    with the input. Raises ImageError (a ValueError) for every bad input and TypeError for a
    source of an unsupported type.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int or None; got {max_pixels}")
    label = _label(source, name)
    if isinstance(source, np.ndarray):
        height, width = _array_hw(source, label)
        _check_size(width, height, max_pixels, label)
        return _array_to_rgb(source, label)
    if isinstance(source, Image.Image):
        _check_size(*source.size, max_pixels, label)
        _decode(source, label)
        return _pil_to_rgb(source, label)
    with _open_encoded(source, label) as img:
        _check_size(*img.size, max_pixels, label)
        _decode(img, label)
        return _pil_to_rgb(img, label)


def image_size(source: ImageSource, *, name: str | None = None) -> tuple[int, int]:
    """Return the (width, height) that `load_image(source)` would give, without decoding.

    For paths and bytes only the header is read (EXIF orientation included), so this is cheap
    even for huge images and applies no pixel limit; truncated pixel data is not detected.
    Raises ImageError for the same missing, empty, non-image and zero-size inputs as
    `load_image`.
    """
    label = _label(source, name)
    if isinstance(source, np.ndarray):
        height, width = _array_hw(source, label)
        _check_size(width, height, None, label)
        return width, height
    if isinstance(source, Image.Image):
        size, orientation = source.size, _orientation(source, header_only=True)
    else:
        with _open_encoded(source, label) as img:
            size, orientation = img.size, _orientation(img, header_only=True)
    width, height = size
    _check_size(width, height, None, label)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _label(source: object, name: str | None) -> str:
    """How error messages name `source`; TypeError for a source of an unsupported type."""
    if not isinstance(
        source, (np.ndarray, Image.Image, bytes, bytearray, memoryview, str, os.PathLike)
    ):
        raise TypeError(
            f"unsupported image source type {type(source).__name__}; pass a path, the encoded "
            "bytes of an image file, a PIL.Image.Image or an HxWxC numpy array"
        )
    if name is not None:
        return name
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return str(filename) if filename else "<PIL image>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fsdecode(source)


def _check_size(width: int, height: int, max_pixels: int | None, label: str) -> None:
    """Raise ImageError for a zero-size image or one with more than `max_pixels` pixels."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: image has zero size ({width}x{height}); nothing to segment")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{label}: image is {width}x{height} = {width * height:,} pixels, more than "
            f"max_pixels={max_pixels:,} (a guard against decompression bombs); to allow it, "
            f"raise the limit (--max-pixels {width * height} on the command line, "
            f"max_pixels={width * height} or max_pixels=None in Python), or downscale the image"
        )


@contextmanager
def _open_encoded(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, label: str
) -> Iterator[Image.Image]:
    """Open a path or encoded bytes with Pillow (header only), closing it afterwards."""
    fp: IO[bytes]
    if isinstance(source, (bytes, bytearray, memoryview)):
        if memoryview(source).nbytes == 0:
            raise ImageError(f"{label}: empty input (0 bytes); pass the content of an image file")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{label}: is a directory; pass the path of an image file")
        try:
            fp = path.open("rb")
        except FileNotFoundError as exc:
            raise ImageError(
                f"{label}: file not found (working directory: {os.getcwd()}); check the path"
            ) from exc
        except OSError as exc:
            raise ImageError(
                f"{label}: cannot be read ({exc.strerror or exc}); check its permissions"
            ) from exc
        if os.fstat(fp.fileno()).st_size == 0:
            fp.close()
            raise ImageError(
                f"{label}: file is empty (0 bytes); it may not have been fully written"
            )
    with fp, _pil_open(fp, label) as img:
        yield img


def _pil_open(fp: IO[bytes], label: str) -> Image.Image:
    """`Image.open` with `max_pixels`, not Pillow's global limit, deciding what is too large."""
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return Image.open(fp)
        except Image.DecompressionBombError:
            # Pillow refuses above 2 * Image.MAX_IMAGE_PIXELS inside `open`, before the caller
            # can apply its own limit. Re-read the header with that check off; nothing is
            # decoded here, and `_check_size` runs next.
            with _PIL_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    return Image.open(fp)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{label}: not a recognised image file, or its header is corrupt; pass a PNG, "
            "JPEG, TIFF, WebP, BMP or another format Pillow can open"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: image header is corrupt ({exc}); re-export the file") from exc


def _decode(img: Image.Image, label: str) -> None:
    """Decode the pixel data now, so that truncated or corrupt files fail here."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{label}: Pillow refused to decode it ({exc}); raise PIL.Image.MAX_IMAGE_PIXELS "
            "to allow it"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"{label}: image data is truncated or corrupt ({exc}); "
            "re-export or re-download the file"
        ) from exc


def _orientation(img: Image.Image, *, header_only: bool) -> int:
    """EXIF orientation 1..8 of `img` (1, upright, when absent or unreadable)."""
    try:
        # PngImageFile.getexif decodes the whole image to look for a late eXIf chunk; the
        # base method reads only what the header gave.
        exif = Image.Image.getexif(img) if header_only else img.getexif()
        value = exif.get(_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block must not make a readable image unloadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Transpose an HxWx3 array as EXIF `orientation` says (as PIL.ImageOps.exif_transpose)."""
    if orientation == 2:  # mirrored horizontally
        return rgb[:, ::-1]
    if orientation == 3:  # rotated 180
        return rgb[::-1, ::-1]
    if orientation == 4:  # mirrored vertically
        return rgb[::-1]
    if orientation == 5:  # transposed (mirrored about the main diagonal)
        return rgb.transpose(1, 0, 2)
    if orientation == 6:  # stored rotated 90 counter-clockwise: rotate 90 clockwise
        return np.rot90(rgb, k=-1)
    if orientation == 7:  # transversed (mirrored about the anti-diagonal)
        return rgb[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:  # stored rotated 90 clockwise: rotate 90 counter-clockwise
        return np.rot90(rgb, k=1)
    return rgb


def _pil_to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an upright HxWx3 uint8 array."""
    mode = img.mode
    pixels: np.ndarray
    if mode in ("RGB", "RGBA", "RGBX", "L", "1") or mode.startswith("I;16") or mode == "F":
        pixels = np.asarray(img)  # RGBA/RGBX: HxWx4, alpha dropped below; 1: bool; F: float32
    elif mode == "LA":
        pixels = np.asarray(img)[..., :1]
    elif mode == "I":
        pixels = _scale_int32(np.asarray(img))
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        pixels = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    elif mode in ("RGBa", "La"):  # premultiplied alpha: un-premultiply, then drop alpha
        pixels = np.asarray(img.convert("RGBA" if mode == "RGBa" else "LA"))[..., :-1]
    else:  # CMYK, YCbCr, HSV, LAB, ...
        try:
            pixels = np.asarray(img.convert("RGB"))
        except ValueError as exc:
            raise ImageError(
                f"{label}: cannot convert image mode {mode!r} to RGB ({exc}); "
                "convert it to RGB first"
            ) from exc
    rgb = _array_to_rgb(pixels, label)
    rgb = _apply_orientation(rgb, _orientation(img, header_only=False))
    if not rgb.flags.writeable or not rgb.flags.c_contiguous:
        rgb = rgb.copy()  # np.asarray(img) views Pillow's bytes read-only; own the result
    return rgb


def _scale_int32(values: np.ndarray) -> np.ndarray:
    """Mode "I" pixels -> uint8: 16-bit data when it fits in 0..65535, else 31-bit."""
    values = np.clip(values, 0, None)
    shift = 8 if values.size == 0 or int(values.max()) <= 0xFFFF else 23
    return (values >> shift).astype(np.uint8)


def _array_hw(array: np.ndarray, label: str) -> tuple[int, int]:
    """(H, W) of an HxW or HxWxC (C in 1, 3, 4) array; ImageError for any other shape."""
    ndim, shape = array.ndim, tuple(array.shape)
    if ndim == 2 or (ndim == 3 and shape[2] in (1, 3, 4)):
        return shape[0], shape[1]
    hint = ""
    if ndim == 3 and shape[0] in (1, 3, 4):
        hint = "; it looks channels-first (CxHxW): pass array.transpose(1, 2, 0)"
    elif ndim == 4 and shape[0] == 1:
        hint = "; it looks batched: pass array[0]"
    raise ImageError(
        f"{label}: expected HxW or HxWxC (C in 1,3,4) image array, got shape {shape}{hint}"
    )


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    """Non-empty HxW / HxWxC (C in 1, 3, 4) array of a supported dtype -> HxWx3 uint8."""
    pixels = _to_uint8(array, label)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)  # (H, W, 1) -> (H, W, 3)
    return np.ascontiguousarray(pixels[:, :, :3])  # RGBA -> RGB: alpha dropped


def _to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    """Apply the dtype rules: uint8 as is, bool -> 0/255, uint16 >> 8, other ints, floats."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if dtype.kind == "u" and dtype.itemsize == 2:  # uint16, either byte order
        return (array >> 8).astype(np.uint8)
    if dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{label}: {dtype} image values must lie in 0..255; got {low}..{high}; "
                "convert to uint8 (or uint16 for 16-bit data) first"
            )
        return array.astype(np.uint8)
    if dtype.kind == "f":
        values = array.astype(np.float32) if dtype.itemsize < 4 else array
        if not np.isfinite(values).all():
            raise ImageError(f"{label}: image contains NaN or infinite values; replace them first")
        if float(values.max()) <= 1.0:
            values = values * 255.0  # 0..1 floats
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    raise ImageError(
        f"{label}: unsupported image dtype {dtype}; pass uint8, uint16, bool or float pixels"
    )

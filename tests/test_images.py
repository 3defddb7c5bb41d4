"""Tests for samkit.io.images: every source kind, mode conversion, orientation and bad input."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFile, ImageOps

from samkit.io import DEFAULT_MAX_PIXELS, ImageError, image_size, load_image


def _save(img: Image.Image, path: Path, **kwargs: Any) -> Path:
    img.save(path, **kwargs)
    return path


def _rgb_pattern(width: int = 5, height: int = 3) -> np.ndarray:
    """An HxWx3 uint8 array where every pixel differs, so transposes are visible."""
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height 8-bit RGB pixels (the data is a stub)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


# --- files, bytes and PIL images -------------------------------------------------------------


def test_rgb_png_round_trip_and_sources_agree(tmp_path: Path) -> None:
    rgb = _rgb_pattern()
    path = _save(Image.fromarray(rgb), tmp_path / "a.png")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3) and out.flags.c_contiguous
    assert out.flags.writeable
    np.testing.assert_array_equal(out, rgb)
    data = path.read_bytes()
    for source in (str(path), data, bytearray(data), memoryview(data), Image.open(path)):
        np.testing.assert_array_equal(load_image(source), rgb)


def test_sixteen_bit_png_scales_by_bit_depth(tmp_path: Path) -> None:
    gray16 = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(gray16), tmp_path / "g16.png")
    assert Image.open(path).mode == "I;16"
    out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255])
    assert (out == out[..., :1]).all()
    big_endian = Image.fromarray(gray16.astype(">u2"))
    assert big_endian.mode == "I;16B"
    np.testing.assert_array_equal(load_image(big_endian), out)


def test_int32_tiff_uses_16_or_31_bits(tmp_path: Path) -> None:
    fits16 = np.array([[0, 256, 65535]], dtype=np.int32)
    path = _save(Image.fromarray(fits16), tmp_path / "i16.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 1, 255])
    wide = np.array([[-5, 1 << 23, 2**31 - 1]], dtype=np.int32)
    path = _save(Image.fromarray(wide), tmp_path / "i32.tif")
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 1, 255])


def test_float_image_uses_the_array_rule(tmp_path: Path) -> None:
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(unit), tmp_path / "unit.tif")
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 128, 255])
    wide = np.array([[-3.0, 12.4, 300.0]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(Image.fromarray(wide))[0, :, 0], [0, 12, 255])
    nan = Image.fromarray(np.array([[np.nan, 1.0]], dtype=np.float32))
    with pytest.raises(ImageError, match="NaN"):
        load_image(nan)


def test_gray_and_bilevel_repeat_the_channel(tmp_path: Path) -> None:
    gray = np.array([[0, 7, 200]], dtype=np.uint8)
    out = load_image(_save(Image.fromarray(gray), tmp_path / "l.png"))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    bilevel = Image.fromarray(np.array([[True, False, True]]))
    assert bilevel.mode == "1"
    out = load_image(_save(bilevel, tmp_path / "b.png"))
    np.testing.assert_array_equal(out[0], [[255] * 3, [0] * 3, [255] * 3])


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], dtype=np.uint8)
    out = load_image(_save(Image.fromarray(rgba), tmp_path / "rgba.png"))
    np.testing.assert_array_equal(out, rgba[..., :3])
    la = Image.fromarray(np.array([[[9, 0], [99, 255]]], dtype=np.uint8), mode="LA")
    out = load_image(_save(la, tmp_path / "la.png"))
    np.testing.assert_array_equal(out[0], [[9] * 3, [99] * 3])


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.putdata([0, 1, 2])
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    np.testing.assert_array_equal(load_image(_save(palette, tmp_path / "p.png"))[0], expected)
    # Per-index alpha (tRNS bytes): Pillow warns when such an image is converted to RGB.
    path = _save(palette, tmp_path / "pt.png", transparency=bytes([255, 0, 128]))
    assert "transparency" in Image.open(path).info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_image(path)[0], expected)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_colour_modes_go_through_pillow(tmp_path: Path, mode: str) -> None:
    img = Image.fromarray(_rgb_pattern()).convert(mode)
    path = _save(img, tmp_path / "c.jpg" if mode == "YCbCr" else tmp_path / "c.tif")
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(load_image(path), expected)


def test_exif_orientation_6_transposes_shape(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    path = _save(Image.new("RGB", (40, 20), (90, 90, 90)), tmp_path / "o.jpg", exif=exif)
    assert load_image(path).shape == (40, 20, 3)
    assert image_size(path) == (20, 40)
    assert image_size(path.read_bytes()) == (20, 40)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(Image.fromarray(_rgb_pattern()), tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    out = load_image(path)
    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous and out.flags.writeable
    assert image_size(path) == (out.shape[1], out.shape[0])


# --- errors for files and bytes ----------------------------------------------------------------


def test_truncated_png_names_the_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png.*truncated or corrupt"):
        load_image(path)
    with pytest.raises(ImageError, match="<bytes>"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"upload\.png"):
        load_image(data[: len(data) // 2], name="upload.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"hello, I am text\n", "not a recognised image")],
)
def test_empty_and_non_image_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    for func in (load_image, image_size):
        with pytest.raises(ImageError, match=rf"fake\.png.*{message}"):
            func(path)
        with pytest.raises(ImageError, match=message):
            func(content)


def test_directory_and_missing_path(tmp_path: Path) -> None:
    for func in (load_image, image_size):
        with pytest.raises(ImageError, match="is a directory"):
            func(tmp_path)
        with pytest.raises(ImageError, match=r"nope\.jpg: file not found"):
            func(tmp_path / "nope.jpg")


def test_unsupported_source_type() -> None:
    with pytest.raises(TypeError, match="unsupported image source type list"):
        load_image([[1, 2], [3, 4]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=0)


def test_max_pixels_limit(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (10, 8)), tmp_path / "small.png")
    with pytest.raises(ImageError, match=r"small\.png: image is 10x8 = 80 pixels.*max_pixels=None"):
        load_image(path, max_pixels=79)
    assert load_image(path, max_pixels=80).shape == (8, 10, 3)
    assert load_image(path, max_pixels=None).shape == (8, 10, 3)
    with pytest.raises(ImageError, match="max_pixels=79"):
        load_image(Image.open(path), max_pixels=79)
    with pytest.raises(ImageError, match="max_pixels=79"):
        load_image(np.zeros((8, 10), np.uint8), max_pixels=79)


def test_header_claiming_huge_image_fails_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []  # every decode goes through ImageFile.load: count the calls
    real_load = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.format or "?")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(100_000, 100_000))
    with pytest.raises(ImageError, match=r"bomb\.png: image is 100000x100000"):
        load_image(path)
    assert image_size(path) == (100_000, 100_000)  # header only, no limit
    assert decoded == []  # no pixel was decoded, so none was allocated
    load_image(_save(Image.new("RGB", (4, 3)), tmp_path / "small.png"))
    assert "PNG" in decoded  # the count sees a real decode
    assert 100_000 * 100_000 > DEFAULT_MAX_PIXELS > 100_000_000


def test_our_limit_not_pillows_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 180 MP is over Pillow's error threshold (2 * MAX_IMAGE_PIXELS) but within ours.
    saved = Image.MAX_IMAGE_PIXELS
    assert image_size(_png_claiming(15_000, 12_000)) == (15_000, 12_000)
    assert saved == Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning above 89 MP either
        assert image_size(_png_claiming(10_000, 10_000)) == (10_000, 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = _save(Image.new("RGB", (10, 10), (1, 2, 3)), tmp_path / "x.png")
    assert load_image(path, max_pixels=None)[9, 9].tolist() == [1, 2, 3]
    with pytest.raises(ImageError, match="max_pixels=50"):
        load_image(path, max_pixels=50)
    assert Image.MAX_IMAGE_PIXELS == 10


def test_zero_size_pil_image() -> None:
    with pytest.raises(ImageError, match="zero size"):
        load_image(Image.new("RGB", (0, 4)))


# --- numpy arrays ------------------------------------------------------------------------------


def test_array_dtypes() -> None:
    gray = np.array([[0, 128]], dtype=np.uint8)
    np.testing.assert_array_equal(load_image(gray[:, :, None])[0, :, 2], [0, 128])
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 1], [255, 0])
    np.testing.assert_array_equal(
        load_image(np.array([[255, 256, 65535]], dtype=np.uint16))[0, :, 0], [0, 1, 255]
    )
    np.testing.assert_array_equal(load_image(np.array([[0.0, 0.5, 1.0]]))[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(
        load_image(np.array([[-1.0, 2.4, 999.0]], dtype=np.float16))[0, :, 0], [0, 2, 255]
    )
    np.testing.assert_array_equal(
        load_image(np.array([[3, 250]], dtype=np.int64))[0, :, 0], [3, 250]
    )
    with pytest.raises(ImageError, match=r"int64 image values must lie in 0..255; got 0..256"):
        load_image(np.array([[0, 256]], dtype=np.int64))
    with pytest.raises(ImageError, match="unsupported image dtype complex128"):
        load_image(np.zeros((2, 2), complex))


def test_array_rgba_drops_alpha_and_is_contiguous() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    out = load_image(rgba)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgba[..., :3])
    view = np.asfortranarray(_rgb_pattern())
    assert load_image(view).flags.c_contiguous


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_array_non_finite(value: float) -> None:
    bad = np.zeros((2, 2, 3), np.float32)
    bad[1, 1, 1] = value
    with pytest.raises(ImageError, match="<array>: image contains NaN or infinite"):
        load_image(bad)


@pytest.mark.parametrize(
    ("shape", "hint"),
    [
        ((3, 8, 9), "channels-first"),
        ((1, 8, 9, 3), "batched"),
        ((8, 9, 2), r"got shape \(8, 9, 2\)"),
        ((8,), r"got shape \(8,\)"),
        ((8, 9, 3, 1, 1), "expected HxW or HxWxC"),
    ],
)
def test_array_bad_shapes(shape: tuple[int, ...], hint: str) -> None:
    with pytest.raises(ImageError, match=r"expected HxW or HxWxC \(C in 1,3,4\)"):
        load_image(np.zeros(shape, np.uint8))
    with pytest.raises(ImageError, match=hint):
        image_size(np.zeros(shape, np.uint8), name="frame")


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (0, 0, 4)])
def test_empty_arrays(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError, match="zero size"):
        load_image(np.zeros(shape, np.uint8))


def test_image_size_of_arrays_and_pil() -> None:
    assert image_size(np.zeros((7, 11, 3), np.uint8)) == (11, 7)
    assert image_size(Image.new("L", (11, 7))) == (11, 7)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))))
def test_property_uint8_rgb_round_trips(rgb: np.ndarray) -> None:
    out = load_image(rgb)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_property_gray_becomes_three_equal_channels(gray: np.ndarray) -> None:
    out = load_image(gray)
    assert out.shape == (*gray.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)

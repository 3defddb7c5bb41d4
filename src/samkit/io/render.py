"""Pictures of results: binary mask PNGs and overlays of masks and prompts on the image."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_path

# Mask colour (RGB) and opacity of overlays; green/red for positive/negative points.
MASK_COLOR = (30, 144, 255)
MASK_ALPHA = 0.55
POINT_COLORS = {1: (0, 200, 0), 0: (220, 0, 0)}


def save_mask_png(mask: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an HxW bool mask as an 8-bit PNG (0 and 255), atomically."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW; got shape {mask.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")


def render_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
) -> np.ndarray:
    """HxWx3 uint8 image with `mask` (HxW bool) tinted and its outline, points and box drawn."""
    out = image.astype(np.float32)
    out[mask] = (1 - MASK_ALPHA) * out[mask] + MASK_ALPHA * np.array(MASK_COLOR, np.float32)
    edge = mask & ~_erode(mask)
    out[edge] = MASK_COLOR
    pil = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    radius = max(3, round(max(image.shape[:2]) / 150))
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
        draw.rectangle((x0, y0, x1, y1), outline=(255, 215, 0), width=max(2, radius // 2))
    if point_coords is not None and point_labels is not None:
        for (x, y), label in zip(np.asarray(point_coords), np.asarray(point_labels), strict=True):
            color = POINT_COLORS.get(int(label), (128, 128, 128))
            draw.ellipse(
                (x - radius, y - radius, x + radius, y + radius),
                fill=color,
                outline=(255, 255, 255),
            )
    return np.asarray(pil)


def save_image(image: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an HxWx3 uint8 image; the format follows the file extension. Atomic."""
    fmt = Image.registered_extensions().get(os.path.splitext(os.fspath(path))[1].lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt)


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel binary erosion (4-neighbourhood), edges treated as outside."""
    padded = np.pad(mask, 1, constant_values=False)
    return (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )


def render_masks(
    image: np.ndarray, masks: np.ndarray, *, alpha: float = 0.6, seed: int = 0
) -> np.ndarray:
    """HxWx3 uint8 image with every mask of `masks` ((N, H, W) bool) in its own colour.

    Larger masks are painted first, so smaller ones (parts) stay visible on top, as in the
    official notebooks' `show_anns`. Colours are drawn from `seed`, so a figure is repeatable.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"masks must be (N, H, W) with H, W = {image.shape[:2]}; got shape {masks.shape}"
        )
    out = image.astype(np.float32)
    colours = np.random.default_rng(seed).integers(40, 256, size=(len(masks), 3))
    for i in np.argsort(-masks.sum(axis=(1, 2)), kind="stable"):
        mask = masks[i]
        out[mask] = (1 - alpha) * out[mask] + alpha * colours[i]
        out[mask & ~_erode(mask)] = colours[i]
    return out.clip(0, 255).astype(np.uint8)


def side_by_side(
    images: list[np.ndarray], titles: list[str] | None = None, *, gap: int = 8
) -> np.ndarray:
    """HxWx3 uint8 images in one row on white, each with an optional title above it."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    rgb = [np.dstack([im] * 3) if im.ndim == 2 else im[..., :3] for im in images]
    rgb = [np.where(im, 255, 0).astype(np.uint8) if im.dtype == bool else im for im in rgb]
    top = 20 if titles else 0
    height = top + max(im.shape[0] for im in rgb)
    width = sum(im.shape[1] for im in rgb) + gap * (len(rgb) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    x = 0
    for i, im in enumerate(rgb):
        canvas.paste(Image.fromarray(im.astype(np.uint8)), (x, top))
        if titles:
            draw.text((x + 2, 2), titles[i], fill="black", font=font)
        x += im.shape[1] + gap
    return np.asarray(canvas)

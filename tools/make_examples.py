"""Draw the bundled example image, examples/shapes.png (a small scene with parts and groups).

python tools/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"


def main() -> None:
    rng = np.random.default_rng(7)
    h, w = 240, 320
    yy, xx = np.mgrid[:h, :w]
    background = np.stack([150 + 40 * xx / w, 160 + 30 * yy / h, 140 + 0 * xx], axis=-1)
    background += rng.normal(0, 6, background.shape)
    img = Image.fromarray(background.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((60, 50, 140, 130), fill=(200, 40, 40))  # red disc
    draw.rounded_rectangle((170, 40, 290, 150), radius=12, fill=(40, 70, 190))  # blue panel
    draw.rectangle((195, 65, 240, 110), fill=(240, 200, 40))  # its yellow part
    draw.polygon([(40, 220), (110, 150), (150, 225)], fill=(40, 150, 60))  # green triangle
    for cx in (200, 235, 270):  # a group of three small grey discs
        draw.ellipse((cx - 12, 180, cx + 12, 204), fill=(90, 90, 90))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    OUT.parent.mkdir(exist_ok=True)
    img.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

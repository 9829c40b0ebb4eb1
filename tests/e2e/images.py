"""Images made for the end-to-end tests."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def make_image(fmt: str, width: int = 800, height: int = 600, seed: int = 0) -> bytes:
    image = Image.new("RGB", (width, height), (seed * 40 % 255, 120, 200))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 37):
        draw.line((x, 0, width - x, height), fill=(255, (x + seed) % 255, 0), width=3)
    out = io.BytesIO()
    image.save(out, format={"png": "PNG", "jpeg": "JPEG"}[fmt], quality=92)
    return out.getvalue()

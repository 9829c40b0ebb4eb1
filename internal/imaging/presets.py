"""The seeds' PDF quality presets and the geometry of the converted image and its page."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mcsv.v1 import common_pb2

POINTS_PER_INCH = 72


@dataclass(frozen=True)
class Preset:
    """ImageMagick's -quality (JPEG/zip compression) and -density (pixels per inch)."""

    quality: int
    density: int


PRESETS: dict[int, Preset] = {
    common_pb2.PDF_QUALITY_LOW: Preset(quality=60, density=72),
    common_pb2.PDF_QUALITY_MEDIUM: Preset(quality=85, density=100),
    common_pb2.PDF_QUALITY_HIGH: Preset(quality=95, density=200),
    common_pb2.PDF_QUALITY_LOSSLESS: Preset(quality=100, density=300),
}


def preset_for(quality: int) -> Preset:
    """The preset for a PdfQuality value; unspecified means medium."""
    if quality == common_pb2.PDF_QUALITY_UNSPECIFIED:
        quality = common_pb2.PDF_QUALITY_MEDIUM
    try:
        return PRESETS[quality]
    except KeyError:
        raise ValueError(f"unknown PdfQuality value {quality}") from None


def output_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The size `-resize {max_width}x{max_height}>` gives: shrink only, keep the aspect ratio,
    a bound of 0 means unbounded. Rounds exactly as ImageMagick 6 does (floor(scale*n + 0.5))."""
    scales = [bound / size for bound, size in ((max_width, width), (max_height, height)) if bound]
    scale = min(scales, default=1.0)
    if scale >= 1.0:
        return width, height
    return max(1, math.floor(scale * width + 0.5)), max(1, math.floor(scale * height + 0.5))


def resize_geometry(max_width: int, max_height: int) -> str | None:
    """The -resize argument for the bounds, or None when both are 0 (no resize)."""
    if not max_width and not max_height:
        return None
    return f"{max_width or ''}x{max_height or ''}>"


def page_points(pixels: int, density: int) -> float:
    """A page side in points (1/72 inch) for an image side printed at `density` pixels per inch."""
    return pixels / density * POINTS_PER_INCH

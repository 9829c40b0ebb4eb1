"""PNG/JPEG to PDF: inspect_image checks an untrusted image with Pillow, ImageMagick converts
it with `convert` under the project's hardened policy (policy.xml, installed by
`python -m internal.imaging.install_policy`)."""

from internal.imaging.errors import ConversionFailed, ImageMagickUnavailable, ImageRejected
from internal.imaging.inspection import (
    ImageInfo,
    check_pixels,
    inspect_image,
    pixels_checked_by_magick,
    read_header,
)
from internal.imaging.magick import ImageMagick, PdfResult

__all__ = [
    "ConversionFailed",
    "ImageInfo",
    "ImageMagick",
    "ImageMagickUnavailable",
    "ImageRejected",
    "PdfResult",
    "check_pixels",
    "inspect_image",
    "pixels_checked_by_magick",
    "read_header",
]

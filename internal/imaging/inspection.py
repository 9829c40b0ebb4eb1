"""Checking an untrusted image with Pillow before ImageMagick sees it."""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass

from mcsv.v1 import common_pb2
from PIL import Image, UnidentifiedImageError

from internal.imaging.errors import ImageRejected

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# The policy's width and height limit (16KP); ImageMagick's own refusal of a PNG is unclear.
DEFAULT_MAX_SIDE = 16_000

_FORMATS = {"PNG": common_pb2.IMAGE_FORMAT_PNG, "JPEG": common_pb2.IMAGE_FORMAT_JPEG}
# Pillow names a camera's multi-picture JPEG "MPO"; ImageMagick reads its first picture.
_FORMAT_NAMES = {**_FORMATS, "MPO": common_pb2.IMAGE_FORMAT_JPEG}
_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 turn the picture a quarter, so width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# Pillow raises these (and OSError) on broken or hostile data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageInfo:
    """What inspection found: `format` is a common_pb2.ImageFormat value and width/height are
    the stored pixels. `orientation` is a JPEG's EXIF orientation (1-8), which ImageMagick
    applies with -auto-orient; it is 1 for PNG, whose eXIf orientation ImageMagick 6 ignores."""

    format: int
    width: int
    height: int
    orientation: int = 1

    @property
    def oriented_size(self) -> tuple[int, int]:
        """Width and height once the orientation is applied."""
        if self.orientation in _QUARTER_TURNS:
            return self.height, self.width
        return self.width, self.height


def inspect_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> ImageInfo:
    """Checks that `data` is a whole PNG or JPEG of at most `max_pixels` pixels, `max_bytes`
    bytes and `max_side` pixels a side, and says what it is; raises ImageRejected with the
    reason otherwise.

    The dimensions are read from the header before any pixel is decoded, so a decompression
    bomb is refused without being inflated. Within the limits the image is verified and
    decoded once (a JPEG at 1/8 scale), which catches truncated and corrupt files."""
    info = read_header(data, max_pixels=max_pixels, max_bytes=max_bytes, max_side=max_side)
    check_pixels(data)
    return info


def read_header(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> ImageInfo:
    """inspect_image's first half, quick: format, size, pixel count and side limits from the
    header (a decompression bomb is refused here), and Pillow's structural verification (a
    PNG's chunk checksums), without decoding pixels."""
    if not data:
        raise ImageRejected("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(f"the image is {len(data)} bytes, more than the limit of {max_bytes}")
    return _read_header(data, max_pixels, max_side)


def check_pixels(data: bytes) -> None:
    """inspect_image's second half: decodes the pixels of an image read_header accepted;
    ImageRejected when they are corrupt or truncated."""
    _decode(data)


def pixels_checked_by_magick(info: ImageInfo) -> bool:
    """Whether ImageMagick itself refuses this image when its pixels are corrupt or
    truncated, so that check_pixels need only run once a conversion failed (to tell bad
    input from our failure). True for PNG: read_header already reads every chunk to IEND
    and checks its CRC, so a cut shows there, and libpng fails the conversion on a broken
    pixel stream. False for JPEG: libjpeg only warns on a truncated one, and ImageMagick
    converts it, grey where the data ends."""
    return info.format == common_pb2.IMAGE_FORMAT_PNG


def _read_header(data: bytes, max_pixels: int, max_side: int) -> ImageInfo:
    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageRejected(f"the image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"the image is {width}x{height} = {width * height} pixels, more than the "
                    f"limit of {max_pixels} (possible decompression bomb)"
                )
            if max(width, height) > max_side:
                raise ImageRejected(
                    f"the image is {width}x{height}; sides longer than {max_side} pixels "
                    "are not accepted"
                )
            image_format = _FORMAT_NAMES.get(image.format or "")
            if image_format is None:
                raise ImageRejected(f"unsupported image format {image.format}")
            orientation = 1
            if image_format == common_pb2.IMAGE_FORMAT_JPEG:
                orientation = _orientation(image)
            image.verify()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"the image has too many pixels (decompression bomb): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(_unidentified_reason(data)) from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"the image is corrupt: {exc}") from exc
    return ImageInfo(format=image_format, width=width, height=height, orientation=orientation)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF: ImageMagick will not rotate either
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode(data: bytes) -> None:
    """Decodes every pixel (a JPEG at 1/8 scale, which still reads all of its data)."""
    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
            if image.format in ("JPEG", "MPO"):
                width, height = image.size
                image.draft(image.mode, (math.ceil(width / 8), math.ceil(height / 8)))
            image.load()
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"the image is corrupt or truncated: {exc}") from exc


_OTHER_FORMATS = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def _unidentified_reason(data: bytes) -> str:
    if data.startswith((_PNG_SIGNATURE, _JPEG_SIGNATURE)):
        return "the image is corrupt or truncated: its header cannot be read"
    name = next((name for magic, name in _OTHER_FORMATS if data.startswith(magic)), None)
    if name is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        name = "WebP"
    if name is None and data.lstrip()[:5].lower() in (b"<?xml", b"<svg "):
        name = "SVG/XML"
    if name is None and data[4:8] == b"ftyp":
        name = "HEIF/AVIF"
    what = f"a {name} image" if name else "not an image we recognise"
    return f"unsupported image format: {what}; only PNG and JPEG are accepted"

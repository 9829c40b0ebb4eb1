"""Images made with Pillow (or by hand, for hostile ones) for the imaging tests."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, PngImagePlugin

ARTIST_MARKER = "MCSV-Artist-Marker-7f3a"
_EXIF_ARTIST = 0x013B
_EXIF_ORIENTATION = 0x0112


def picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A gradient, so that compression has something to do."""
    gradient = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return gradient
    across = gradient.transpose(Image.Transpose.ROTATE_90).resize(size)
    colour = Image.merge("RGB", (gradient, across, Image.new("L", size, 90)))
    if mode == "RGBA":
        colour.putalpha(across)
        return colour
    return colour.convert(mode)


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def png(size: tuple[int, int], mode: str = "RGB", **params: object) -> bytes:
    return encode(picture(size, mode), "PNG", **params)


def jpeg(size: tuple[int, int], mode: str = "RGB", **params: object) -> bytes:
    return encode(picture(size, mode), "JPEG", quality=90, **params)


def jpeg_with_exif(size: tuple[int, int], *, orientation: int = 1) -> bytes:
    """A JPEG whose EXIF names ARTIST_MARKER as the artist."""
    image = picture(size)
    exif = image.getexif()
    exif[_EXIF_ARTIST] = ARTIST_MARKER
    exif[_EXIF_ORIENTATION] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def png_with_text(size: tuple[int, int]) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", ARTIST_MARKER)
    return png(size, pnginfo=info)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_from_rows(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit greyscale PNG with the given IHDR size and IDAT payload."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def real_bomb(width: int, height: int) -> bytes:
    """A complete, valid black greyscale PNG: some 100 kB that inflate to width*height bytes."""
    compressor = zlib.compressobj(1)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_from_rows(width, height, idat)


def declared_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but which carries one row of data."""
    return png_from_rows(width, height, zlib.compress(b"\x00" * 65))

"""The three ways an image conversion can fail, each with a message meant for a person."""

from __future__ import annotations


class ImageRejected(Exception):
    """The input is not an image we convert: not PNG or JPEG, corrupt, truncated, too big, or
    with too many pixels (a possible decompression bomb). Retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConversionFailed(Exception):
    """ImageMagick failed or timed out on an image that passed inspection; the message ends
    with the tail of its stderr."""


class ImageMagickUnavailable(Exception):
    """ImageMagick is missing, is not ImageMagick, or its security policy forbids what we need;
    the message says what to do about it."""

"""Page size and opaque page tokens for the List RPCs. A token is the URL-safe base64 of a
decimal offset (or position); only what next_page_token issues is accepted back: anything
else (not base64, not a canonical decimal, negative, beyond MAX_TOKEN_VALUE) is
invalid_argument naming page_token."""

from __future__ import annotations

import base64
import binascii

from internal.services.common.errors import invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The largest offset or position a token may carry: far beyond any table, and with a page on
# top still within the 64-bit integers both databases take for OFFSET and comparisons.
MAX_TOKEN_VALUE = 2**62
# The length of the longest token: base64 of MAX_TOKEN_VALUE's digits.
_MAX_TOKEN_LENGTH = 4 * -(-len(str(MAX_TOKEN_VALUE)) // 3)


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid_argument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_offset(token: str) -> int:
    if not token:
        return 0
    offset = _decode(token)
    if offset is None:
        raise invalid_argument("page_token", "is not a token this service issued")
    return offset


def _decode(token: str) -> int | None:
    """The value of a token as next_page_token writes it, or None for anything else."""
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        return None
    try:
        digits = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    if value > MAX_TOKEN_VALUE or _encode(value) != token:  # e.g. leading zeros
        return None
    return value


def _encode(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode()


def next_page_token(offset: int, size: int, more: bool) -> str:
    return _encode(offset + size) if more else ""


def position_token(position: int, more: bool) -> str:
    """A page token that resumes after a position (a keyset cursor, such as a sequence number)
    instead of an offset; same encoding and rules, read back with page_position."""
    return next_page_token(position, 0, more)


def page_position(token: str) -> int:
    """The position a position_token resumes after; 0 for no token."""
    return page_offset(token)

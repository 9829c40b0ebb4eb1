"""Page size and opaque page tokens for the List RPCs."""

from __future__ import annotations

import base64

from internal.services.common.errors import invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid_argument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_offset(token: str) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        offset = -1
    if offset < 0:
        raise invalid_argument("page_token", "is not a token this service issued")
    return offset


def next_page_token(offset: int, size: int, more: bool) -> str:
    return base64.urlsafe_b64encode(str(offset + size).encode()).decode() if more else ""


def position_token(position: int, more: bool) -> str:
    """A page token that resumes after a position (a keyset cursor, such as a sequence number)
    instead of an offset; same encoding and rules, read back with page_position."""
    return next_page_token(position, 0, more)


def page_position(token: str) -> int:
    """The position a position_token resumes after; 0 for no token."""
    return page_offset(token)

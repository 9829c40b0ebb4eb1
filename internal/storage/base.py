"""What every storage backend shares: the interface, its errors, and what a valid key and
content type are."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Protocol

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # a file name on common filesystems
MAX_CONTENT_TYPE_LENGTH = 255

# A segment starts with a letter, digit or underscore, so "." and ".." and hidden names are out.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\r\n]*\"))*",
)


class StorageError(Exception):
    """A storage operation failed, or was asked for with bad input; the message says which."""


class ObjectExists(StorageError):
    """A write that must create an object found one there (a presigned PUT used again)."""


class ObjectNotFound(StorageError):
    """The object asked for does not exist."""


class Storage(Protocol):
    """Object storage: bytes under keys such as "uploads/<id>/photo.png", plus presigned URLs
    that let a holder GET or PUT one object without any other credentials."""

    origin: str
    """scheme://host[:port] that every presigned URL of this storage starts with."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes:
        """Raises ObjectNotFound if there is no such object."""
        ...

    def size(self, key: str) -> int:
        """Raises ObjectNotFound if there is no such object."""
        ...

    def delete(self, key: str) -> None:
        """Deleting an object that does not exist is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def presign_get(self, key: str, expires_in: timedelta) -> str: ...

    def presign_put(self, key: str, expires_in: timedelta, content_type: str) -> str:
        """A URL to PUT the object with this Content-Type."""
        ...


def validate_key(key: str) -> str:
    """Returns the key if it is valid, or raises StorageError saying what is wrong with it.

    Keys are relative, slash-separated paths of letters, digits, ".", "_" and "-", so that they
    are safe as file paths and need no escaping in URLs."""
    problem = _key_problem(key)
    if problem:
        shown = key if len(key) <= 80 else key[:80] + "…"
        raise StorageError(f"invalid storage key {shown!r}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"it is longer than {MAX_KEY_LENGTH} characters"
    if "\\" in key:
        return "it contains a backslash"
    if key.startswith("/"):
        return "it starts with '/'"
    if key.endswith("/"):
        return "it ends with '/'"
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            return "it contains an empty, '.' or '..' path segment"
        if len(segment) > MAX_SEGMENT_LENGTH:
            return f"a path segment is longer than {MAX_SEGMENT_LENGTH} characters"
        if not _SEGMENT.fullmatch(segment):
            return (
                f"segment {segment!r} must start with a letter, digit or '_' and contain only "
                "letters, digits, '.', '_' and '-'"
            )
    return None


def normalize_content_type(content_type: str) -> str:
    """The content type in the form it is stored and signed in (trimmed, lower case), or
    StorageError if it is not a media type such as "image/png" or "text/plain; charset=utf-8"."""
    value = content_type.strip().lower()
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.fullmatch(value):
        raise StorageError(
            f"invalid content type {content_type[:80]!r}: expected a media type like 'image/png'"
        )
    return value

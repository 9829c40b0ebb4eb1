"""The Twirp errors services answer bad requests with, worded the same way everywhere."""

from __future__ import annotations

import re
from typing import TypeVar

from mcsv.twirp import ErrorCode, TwirpError

R = TypeVar("R")


def invalid_argument(argument: str, problem: str) -> TwirpError:
    """invalid_argument naming the field, in msg and in meta["argument"]."""
    return TwirpError(ErrorCode.INVALID_ARGUMENT, f"{argument}: {problem}", {"argument": argument})


def not_found(kind: str, identifier: str) -> TwirpError:
    return TwirpError(ErrorCode.NOT_FOUND, f"no {kind} with id {identifier!r}", {"id": identifier})


def found(row: R | None, kind: str, identifier: str) -> R:
    """The row looked up, or not_found when there is none."""
    if row is None:
        raise not_found(kind, identifier)
    return row


def require(value: str, argument: str, *, max_length: int = 1000) -> str:
    """The value of a required string field, stripped; invalid_argument when empty or long."""
    value = value.strip()
    if not value:
        raise invalid_argument(argument, "is required")
    if len(value) > max_length:
        raise invalid_argument(argument, f"is longer than {max_length} characters")
    return value


# Deliberately loose: one @, something on each side, a dot in the domain, no spaces.
# The mail server decides the rest.
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def require_email(value: str, argument: str) -> str:
    """A required email address field, stripped; invalid_argument unless it looks like one."""
    address = require(value, argument, max_length=320)
    if not _ADDRESS.match(address):
        raise invalid_argument(argument, f"{address!r} is not an email address")
    return address

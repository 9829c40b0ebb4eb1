"""The Twirp errors services answer bad requests with, worded the same way everywhere, and the
checks of request fields that raise them: bad input is invalid_argument naming the field,
never an exception that becomes a 500."""

from __future__ import annotations

import re
from typing import TypeVar

from google.protobuf.message import Message
from mcsv.twirp import ErrorCode, TwirpError

from internal.urls import url_problem

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


def require_url(value: str, argument: str) -> str:
    """A required http(s) URL field; invalid_argument when empty or malformed (control
    characters, spaces, no host: see internal.urls)."""
    if not value:
        raise invalid_argument(argument, "is required")
    return optional_url(value, argument)


def optional_url(value: str, argument: str) -> str:
    """An http(s) URL field that may be empty; when set it must be well formed."""
    if value and (problem := url_problem(value)) is not None:
        raise invalid_argument(argument, problem)
    return value


def require_outcome(value: int, argument: str) -> int:
    """A required Outcome: succeeded, failed or cancelled (OUTCOME_UNSPECIFIED: not set)."""
    if value == 0:
        raise invalid_argument(argument, "is required (succeeded, failed or cancelled)")
    return value


_TIME_TYPES = ("google.protobuf.Timestamp", "google.protobuf.Duration")


def require_valid_times(message: Message, prefix: str = "") -> None:
    """invalid_argument naming the first Timestamp or Duration, at any depth of `message`,
    that is out of its range (years 1 to 9999; +-10,000 years) or has bad nanos. The binary
    format carries any int64, but such a time cannot be converted or written as JSON, so a
    stored or relayed one would fail every later read."""
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None or kind.GetOptions().map_entry:
            continue  # not a message; the contracts' maps are of strings
        values = list(value) if field.is_repeated else [value]
        for index, item in enumerate(values):
            path = f"{prefix}{field.name}" + (f"[{index}]" if field.is_repeated else "")
            if kind.full_name in _TIME_TYPES:
                try:
                    item.ToJsonString()
                except ValueError as exc:
                    raise invalid_argument(path, str(exc)) from None
            else:
                require_valid_times(item, f"{path}.")

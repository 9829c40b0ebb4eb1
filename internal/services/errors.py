"""The Twirp errors services answer bad requests with, worded the same way everywhere."""

from __future__ import annotations

from mcsv.twirp import ErrorCode, TwirpError


def invalid_argument(argument: str, problem: str) -> TwirpError:
    """invalid_argument naming the field, in msg and in meta["argument"]."""
    return TwirpError(ErrorCode.INVALID_ARGUMENT, f"{argument}: {problem}", {"argument": argument})


def not_found(kind: str, identifier: str) -> TwirpError:
    return TwirpError(ErrorCode.NOT_FOUND, f"no {kind} with id {identifier!r}", {"id": identifier})


def require(value: str, argument: str, *, max_length: int = 1000) -> str:
    """The value of a required string field, stripped; invalid_argument when empty or long."""
    value = value.strip()
    if not value:
        raise invalid_argument(argument, "is required")
    if len(value) > max_length:
        raise invalid_argument(argument, f"is longer than {max_length} characters")
    return value

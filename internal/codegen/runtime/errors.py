"""Twirp errors: the codes of the v7 wire protocol, their HTTP statuses, and one exception type.

Clients raise TwirpError for every failed call; servers turn a raised TwirpError into the
Twirp JSON error body with the status of its code.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any


class ErrorCode(enum.StrEnum):
    """The Twirp error codes (spec v7, as spelled by the reference Go implementation)."""

    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    MALFORMED = "malformed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    BAD_ROUTE = "bad_route"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"

    @property
    def http_status(self) -> int:
        """The HTTP status a server answers with for this code."""
        return _HTTP_STATUS[self]


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.CANCELED: 408,
    ErrorCode.UNKNOWN: 500,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.MALFORMED: 400,
    ErrorCode.DEADLINE_EXCEEDED: 408,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.BAD_ROUTE: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.FAILED_PRECONDITION: 412,
    ErrorCode.ABORTED: 409,
    ErrorCode.OUT_OF_RANGE: 400,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DATA_LOSS: 500,
}

# How the reference client reads a non-Twirp answer (from a proxy or load balancer).
_INTERMEDIARY_CODE: dict[int, ErrorCode] = {
    400: ErrorCode.INTERNAL,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.BAD_ROUTE,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    502: ErrorCode.UNAVAILABLE,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.UNAVAILABLE,
}

MAX_MESSAGE_CHARS = 1_000_000


class TwirpError(Exception):
    """A Twirp error: a code, a message for humans, and string metadata."""

    def __init__(
        self, code: ErrorCode | str, msg: str, meta: Mapping[str, object] | None = None
    ) -> None:
        self.code = ErrorCode(code)
        self.msg = msg
        self.meta: dict[str, str] = {str(k): str(v) for k, v in (meta or {}).items()}
        super().__init__(f"{self.code}: {msg}")

    @property
    def http_status(self) -> int:
        return self.code.http_status

    def with_meta(self, **meta: object) -> TwirpError:
        """Adds metadata and returns self, for chaining."""
        self.meta.update({k: str(v) for k, v in meta.items()})
        return self

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "msg": self.msg[:MAX_MESSAGE_CHARS]}
        if self.meta:
            body["meta"] = self.meta
        return body

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"TwirpError({self.code.value!r}, {self.msg!r}, meta={self.meta!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwirpError):
            return NotImplemented
        return (self.code, self.msg, self.meta) == (other.code, other.msg, other.meta)

    __hash__ = Exception.__hash__

    @classmethod
    def from_response(cls, status: int, body: bytes, location: str | None = None) -> TwirpError:
        """The error an unsuccessful HTTP answer stands for, read as the reference client does:
        a Twirp JSON error body as such, anything else by its HTTP status."""
        reason = _reason(status)
        if 300 <= status <= 399:
            return cls._from_intermediary(
                status,
                f"unexpected HTTP status code {status} {reason!r} received, "
                f"Location={location or ''!r}",
                location=location or "",
            )
        text = body.decode("utf-8", errors="replace")
        data = _twirp_error_body(text)
        if data is None:
            return cls._from_intermediary(
                status,
                f"Error from intermediary with HTTP status code {status} {reason!r}",
                body=text,
            )
        try:
            code = ErrorCode(data["code"])
        except ValueError:
            return cls(
                ErrorCode.INTERNAL,
                f"invalid type returned from server error response: {data['code']}",
                {"body": text},
            )
        return cls(code, data["msg"], data.get("meta"))

    @classmethod
    def _from_intermediary(cls, status: int, msg: str, **meta: str) -> TwirpError:
        code = (
            ErrorCode.INTERNAL
            if 300 <= status <= 399
            else _INTERMEDIARY_CODE.get(status, ErrorCode.UNKNOWN)
        )
        return cls(
            code, msg, {"http_error_from_intermediary": "true", "status_code": str(status), **meta}
        )


def _twirp_error_body(text: str) -> dict[str, Any] | None:
    """The body as a Twirp error object, or None when it is not exactly one: like the reference
    client, only the keys code (non-empty), msg and meta (string to string), nothing else."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not set(data) <= {"code", "msg", "meta"}:
        return None
    if data.get("meta") is None:
        data.pop("meta", None)
    elif not isinstance(data["meta"], dict) or not all(
        isinstance(v, str) for v in data["meta"].values()
    ):
        return None
    if data.get("msg") is None:
        data["msg"] = ""
    code, msg = data.get("code"), data["msg"]
    return data if isinstance(code, str) and code and isinstance(msg, str) else None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""

"""What a service implementation receives besides its request: the Context protocol, and
ServerContext, the context the server runtime (server.py) passes to handlers and hooks."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol


class Context(Protocol):
    """The per-request context a Twirp server passes to each RPC method: request headers,
    service and method names, and values set by hooks. ServerContext satisfies it (and so
    does the `twirp` PyPI package's Context)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class ContextKey(enum.StrEnum):
    """Keys ServerContext.get answers from the request itself. They are spelled as the
    `twirp` PyPI package spells its ctxkeys, so that code written for it reads them alike."""

    SERVICE_NAME = "service_name"  # "mcsv.v1.UserService", once routed
    METHOD_NAME = "method_name"  # "CreateUser", once routed
    HEADERS = "raw_headers"  # the request headers, names lower-cased
    REQUEST_PATH = "raw_request_path"  # "/twirp/mcsv.v1.UserService/CreateUser"
    RESPONSE_STATUS = "response_status"  # the HTTP status answered, once known


class ServerContext:
    """One request as the server runtime sees it. Handlers read it through Context.get (or
    these attributes); hooks also see how the request is answered.

    headers: request headers, names lower-cased, repeated headers joined with ", ".
    response_headers: headers a handler or hook adds to a successful answer."""

    def __init__(self, http_method: str, path: str, headers: Mapping[str, str]) -> None:
        self.http_method = http_method
        self.path = path
        self.headers = dict(headers)
        self.service_name: str | None = None
        self.method_name: str | None = None
        self.response_headers: dict[str, str] = {}
        self.status: int | None = None
        self._values: dict[str, Any] = {}

    @property
    def routed(self) -> bool:
        """Whether the request reached an RPC (its service and method are known)."""
        return self.method_name is not None

    def get(self, key: str) -> Any:
        """A value set with set(), or one of ContextKey's; None when there is none."""
        if key in self._values:
            return self._values[key]
        builtin: dict[str, Any] = {
            ContextKey.SERVICE_NAME: self.service_name,
            ContextKey.METHOD_NAME: self.method_name,
            ContextKey.HEADERS: self.headers,
            ContextKey.REQUEST_PATH: self.path,
            ContextKey.RESPONSE_STATUS: self.status,
        }
        return builtin.get(key)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value

"""What a service implementation receives besides its request."""

from __future__ import annotations

from typing import Any, Protocol


class Context(Protocol):
    """The per-request context a Twirp server passes to each RPC method (the `twirp`
    runtime's Context satisfies it): request headers, service and method names, and
    values set by middleware."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

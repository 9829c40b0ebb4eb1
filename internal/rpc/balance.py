"""Spreading calls over a service's replicas: transports of the generated clients (the
runtime's SyncTransport/AsyncTransport seam) that send each request to the next replica in
turn, and to the one after when a replica refuses the connection (a replica being restarted
must not fail the call). A request that reached a replica is never sent to another: that
could run it twice."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from mcsv.twirp import (
    AsyncTransport,
    ConnectFailed,
    HTTPRequest,
    HTTPResponse,
    HttptoolsSyncTransport,
    HttptoolsTransport,
    SyncTransport,
)


class Replicas:
    """The base URLs of one service's replicas, handed out round-robin."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        if not base_urls:
            raise ValueError("a service needs at least one base URL")
        self.bases = [_origin(url) for url in base_urls]
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def in_turn(self) -> list[tuple[str, str]]:
        """Every replica's (scheme, host:port), starting with the one whose turn it is."""
        if len(self.bases) == 1:
            return self.bases
        with self._lock:
            start = next(self._turn) % len(self.bases)
        return self.bases[start:] + self.bases[:start]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return parts.scheme, parts.netloc


def _aimed(url: str, origin: tuple[str, str]) -> str:
    parts = urlsplit(url)
    return urlunsplit((origin[0], origin[1], parts.path, parts.query, parts.fragment))


class BalancedTransport:
    """An AsyncTransport over `inner` (default: HttptoolsTransport) for one service's replicas."""

    def __init__(self, replicas: Replicas, inner: AsyncTransport | None = None) -> None:
        self.replicas = replicas
        self.inner: AsyncTransport = inner or HttptoolsTransport()

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        refused: ConnectFailed | None = None
        for origin in self.replicas.in_turn():
            request.url = _aimed(request.url, origin)
            try:
                return await self.inner.send(request)
            except ConnectFailed as exc:
                refused = exc
        assert refused is not None
        raise refused

    async def aclose(self) -> None:
        await self.inner.aclose()


class BalancedSyncTransport:
    """The blocking twin of BalancedTransport (default inner: HttptoolsSyncTransport)."""

    def __init__(self, replicas: Replicas, inner: SyncTransport | None = None) -> None:
        self.replicas = replicas
        self.inner: SyncTransport = inner or HttptoolsSyncTransport()

    def send(self, request: HTTPRequest) -> HTTPResponse:
        refused: ConnectFailed | None = None
        for origin in self.replicas.in_turn():
            request.url = _aimed(request.url, origin)
            try:
                return self.inner.send(request)
            except ConnectFailed as exc:
                refused = exc
        assert refused is not None
        raise refused

    def close(self) -> None:
        self.inner.close()

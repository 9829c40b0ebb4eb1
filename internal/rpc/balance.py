"""Spreading calls over a service's replicas: httpx transports that send each request to
the next replica in turn, and to the one after when a replica refuses the connection (a
replica being restarted must not fail the call). A request that reached a replica is never
sent to another: that could run it twice."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import httpx


class Replicas:
    """The base URLs of one service's replicas, handed out round-robin."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        if not base_urls:
            raise ValueError("a service needs at least one base URL")
        self.bases = [httpx.URL(url) for url in base_urls]
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def in_turn(self) -> list[httpx.URL]:
        """Every replica, starting with the one whose turn it is."""
        with self._lock:
            start = next(self._turn) % len(self.bases)
        return self.bases[start:] + self.bases[:start]


def _aimed(request: httpx.Request, base: httpx.URL) -> None:
    request.url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    request.headers["Host"] = base.netloc.decode()


class BalancedTransport(httpx.AsyncBaseTransport):
    def __init__(self, replicas: Replicas, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.replicas = replicas
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        refused: httpx.ConnectError | None = None
        for base in self.replicas.in_turn():
            _aimed(request, base)
            try:
                return await self.inner.handle_async_request(request)
            except httpx.ConnectError as exc:
                refused = exc
        assert refused is not None
        raise refused

    async def aclose(self) -> None:
        await self.inner.aclose()


class BalancedSyncTransport(httpx.BaseTransport):
    def __init__(self, replicas: Replicas, inner: httpx.BaseTransport | None = None) -> None:
        self.replicas = replicas
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        refused: httpx.ConnectError | None = None
        for base in self.replicas.in_turn():
            _aimed(request, base)
            try:
                return self.inner.handle_request(request)
            except httpx.ConnectError as exc:
                refused = exc
        assert refused is not None
        raise refused

    def close(self) -> None:
        self.inner.close()

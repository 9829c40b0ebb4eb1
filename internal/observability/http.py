"""Observing outgoing calls: every call gets a client span (Twirp calls named after their RPC),
carries the W3C trace context and the request id in its headers, and Twirp calls are counted
in the client metrics.

TracingTransport/TracingSyncTransport wrap a transport of the generated clients (the
runtime's AsyncTransport/SyncTransport seam); internal.peers puts them under every client it
builds. TracedHttpxTransport does the same for a plain httpx client (the console's), HttpCall
for image_svc's own aiohttp requests to presigned storage URLs."""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from urllib.parse import urlsplit

import httpx
from mcsv.twirp import (
    AiohttpTransport,
    AsyncTransport,
    HTTPRequest,
    HTTPResponse,
    HttptoolsSyncTransport,
    SyncTransport,
)
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from internal.observability import context, metrics
from internal.observability.tracing import tracer


def _route(path: str) -> tuple[str, str] | None:
    """(rpc_service, method) of a Twirp call, None for any other request."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 3 and "." in parts[-2]:
        return parts[-2], parts[-1]
    return None


def _twirp_code(status: int, body: bytes) -> str:
    if status == 200:
        return "ok"
    try:
        answer = json.loads(body)
        return str(answer["code"]) if isinstance(answer, dict) and "code" in answer else "unknown"
    except (ValueError, KeyError):
        return "unknown"


class HttpCall:
    """The span and measurements of one outgoing request: made with the request's headers, to
    which it adds the trace context and request id; finish() it with the answer's status, or
    None and the error. The transports below use it, and so does image_svc's own aiohttp
    client for presigned storage URLs."""

    def __init__(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        parts = urlsplit(url)
        self.route = _route(parts.path)
        name = "/".join(self.route) if self.route else f"{method} {parts.hostname}"
        self.span = tracer().start_span(name, kind=SpanKind.CLIENT)
        if self.route:
            self.span.set_attributes(
                {"rpc.system": "twirp", "rpc.service": self.route[0], "rpc.method": self.route[1]}
            )
        else:  # presigned storage URLs: the path and query are credentials, keep them out
            self.span.set_attributes({"http.request.method": method,
                                      "server.address": parts.hostname or ""})  # fmt: skip
        propagate.inject(headers, context=trace.set_span_in_context(self.span))
        if request_id := context.REQUEST_ID.get():
            headers.setdefault(context.REQUEST_ID_HEADER, request_id)
        self.started = time.perf_counter()

    def finish(self, status: int | None, body: bytes, error: BaseException | None) -> None:
        if status is None:
            code = "unavailable"
        else:
            code = _twirp_code(status, body) if self.route else str(status)
            self.span.set_attribute("http.response.status_code", status)
        if self.route:
            self.span.set_attribute("rpc.twirp.code", code)
            labels = (context.SERVICE.get(), self.route[0], self.route[1], code)
            metrics.child(metrics.RPC_CLIENT_REQUESTS, *labels).inc()
            elapsed = time.perf_counter() - self.started
            metrics.child(metrics.RPC_CLIENT_DURATION, *labels).observe(elapsed)
        if error is not None:
            self.span.record_exception(error)
        if error is not None or code not in ("ok", "200", "201", "204"):
            self.span.set_status(Status(StatusCode.ERROR, code))
        self.span.end()


class TracingTransport:
    """An AsyncTransport that observes the calls it passes to `inner` (default: aiohttp's)."""

    def __init__(self, inner: AsyncTransport | None = None) -> None:
        self.inner: AsyncTransport = inner or AiohttpTransport()

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        call = HttpCall("POST", request.url, request.headers)
        try:
            response = await self.inner.send(request)
        except BaseException as exc:
            call.finish(None, b"", exc)
            raise
        call.finish(response.status, response.body, None)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class TracingSyncTransport:
    """The blocking twin of TracingTransport (default inner: HttptoolsSyncTransport)."""

    def __init__(self, inner: SyncTransport | None = None) -> None:
        self.inner: SyncTransport = inner or HttptoolsSyncTransport()

    def send(self, request: HTTPRequest) -> HTTPResponse:
        call = HttpCall("POST", request.url, request.headers)
        try:
            response = self.inner.send(request)
        except BaseException as exc:
            call.finish(None, b"", exc)
            raise
        call.finish(response.status, response.body, None)
        return response

    def close(self) -> None:
        self.inner.close()


class TracedHttpxTransport(httpx.AsyncBaseTransport):
    """An httpx transport observing plain HTTP requests (their bodies stay streamed)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = HttpCall(request.method, str(request.url), request.headers)
        try:
            response = await self._inner.handle_async_request(request)
            if call.route:  # the body holds the Twirp code
                await response.aread()
        except BaseException as exc:
            call.finish(None, b"", exc)
            raise
        call.finish(response.status_code, response.content if call.route else b"", None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

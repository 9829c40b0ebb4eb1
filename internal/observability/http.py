"""httpx transports that observe outgoing calls: every call gets a client span (Twirp calls
named after their RPC), carries the W3C trace context and the request id in its headers, and
Twirp calls are counted in the client metrics. internal.peers puts them under the HTTP
clients it gives the generated clients."""

from __future__ import annotations

import json
import time

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from internal.observability import context, metrics
from internal.observability.tracing import tracer


def _route(request: httpx.Request) -> tuple[str, str] | None:
    """(rpc_service, method) of a Twirp call, None for any other request."""
    parts = request.url.path.rstrip("/").split("/")
    if len(parts) >= 3 and "." in parts[-2]:
        return parts[-2], parts[-1]
    return None


def _twirp_code(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "ok"
    try:
        body = json.loads(response.content)
        return str(body["code"]) if isinstance(body, dict) and "code" in body else "unknown"
    except (ValueError, KeyError):
        return "unknown"


class _Call:
    """The span and measurements of one outgoing request."""

    def __init__(self, request: httpx.Request) -> None:
        self.route = _route(request)
        name = "/".join(self.route) if self.route else f"{request.method} {request.url.host}"
        self.span = tracer().start_span(name, kind=SpanKind.CLIENT)
        if self.route:
            self.span.set_attributes(
                {"rpc.system": "twirp", "rpc.service": self.route[0], "rpc.method": self.route[1]}
            )
        else:  # presigned storage URLs: the path and query are credentials, keep them out
            self.span.set_attributes({"http.request.method": request.method,
                                      "server.address": request.url.host or ""})  # fmt: skip
        with trace.use_span(self.span, end_on_exit=False):
            propagate.inject(request.headers)
        if request_id := context.REQUEST_ID.get():
            request.headers.setdefault(context.REQUEST_ID_HEADER, request_id)
        self.started = time.perf_counter()

    def finish(self, response: httpx.Response | None, error: BaseException | None) -> None:
        code = (
            "unavailable"
            if response is None
            else (_twirp_code(response) if self.route else str(response.status_code))
        )
        if response is not None:
            self.span.set_attribute("http.response.status_code", response.status_code)
        if self.route:
            self.span.set_attribute("rpc.twirp.code", code)
            labels = (context.SERVICE.get(), self.route[0], self.route[1], code)
            metrics.RPC_CLIENT_REQUESTS.labels(*labels).inc()
            metrics.RPC_CLIENT_DURATION.labels(*labels).observe(time.perf_counter() - self.started)
        if error is not None:
            self.span.record_exception(error)
        if error is not None or code not in ("ok", "200", "201", "204"):
            self.span.set_status(Status(StatusCode.ERROR, code))
        self.span.end()


class TracingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = _Call(request)
        try:
            response = await self._inner.handle_async_request(request)
            if call.route:  # the body holds the Twirp code; storage bodies stay streamed
                await response.aread()
        except BaseException as exc:
            call.finish(None, exc)
            raise
        call.finish(response, None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class TracingSyncTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = _Call(request)
        try:
            response = self._inner.handle_request(request)
            if call.route:
                response.read()
        except BaseException as exc:
            call.finish(None, exc)
            raise
        call.finish(response, None)
        return response

    def close(self) -> None:
        self._inner.close()

"""Server side: ObservedTwirp wraps a service's ASGI app (a server span per request, with the
caller's trace context and request id; request metrics), and TwirpObserver, a ServerHooks of
the generated runtime's TwirpApp, tells it which RPC the request was routed to and the Twirp
code it ended with. Requests that route nowhere are labelled "unrouted", so that labels stay
bounded."""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass

from mcsv.twirp import ServerContext, ServerHooks, TwirpApp, TwirpError
from mcsv.twirp.server import Receive, Scope, Send
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from internal.observability import context, metrics
from internal.observability.tracing import current_span

UNROUTED = "unrouted"
log = logging.getLogger("mcsv.twirp")  # one line per Twirp request


@dataclass
class _Request:
    """What the hook learns about the request in hand."""

    rpc_service: str = UNROUTED
    method: str = UNROUTED
    code: str = "ok"
    routed: bool = False


_CURRENT: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("request", default=None)


class TwirpObserver(ServerHooks):
    def request_routed(self, ctx: ServerContext) -> None:
        request = _CURRENT.get()
        if request is None:
            return
        request.rpc_service = ctx.service_name or UNROUTED
        request.method = ctx.method_name or UNROUTED
        request.routed = True
        context.RPC_SERVICE.set(request.rpc_service)
        context.RPC_METHOD.set(request.method)
        span = trace.get_current_span()
        span.update_name(f"{request.rpc_service}/{request.method}")
        span.set_attributes({"rpc.service": request.rpc_service, "rpc.method": request.method})
        labels = (context.SERVICE.get(), request.rpc_service, request.method)
        metrics.child(metrics.RPC_SERVER_IN_FLIGHT, *labels).inc()

    def error(self, ctx: ServerContext, error: TwirpError) -> None:
        request = _CURRENT.get()
        if request is not None:
            request.code = error.code.value

    def response_sent(self, ctx: ServerContext) -> None:
        request = _CURRENT.get()
        if request is not None and request.routed:
            labels = (context.SERVICE.get(), request.rpc_service, request.method)
            metrics.child(metrics.RPC_SERVER_IN_FLIGHT, *labels).dec()


class ObservedTwirp:
    """ASGI middleware around a TwirpApp."""

    def __init__(self, app: TwirpApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get(context.REQUEST_ID_HEADER) or context.new_request_id()
        request = _Request()
        token = _CURRENT.set(request)
        started = time.perf_counter()
        # The request id set directly: context.scoped's generator context manager is dear on
        # every request (callgrind).
        request_id_token = context.REQUEST_ID.set(request_id)
        try:
            with current_span(
                f"{scope['method']} twirp",
                context=propagate.extract(headers),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "twirp", "mcsv.request_id": request_id},
            ) as span:
                await self.app(scope, receive, send)
                span.set_attribute("rpc.twirp.code", request.code)
                if request.code != "ok":
                    span.set_status(Status(StatusCode.ERROR, request.code))
                elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
                log.info(
                    "%s/%s %s %.1f ms",
                    request.rpc_service, request.method, request.code, elapsed_ms,
                    extra={"code": request.code, "duration_ms": elapsed_ms},
                )  # fmt: skip
        finally:
            context.REQUEST_ID.reset(request_id_token)
            _CURRENT.reset(token)
            labels = (context.SERVICE.get(), request.rpc_service, request.method, request.code)
            metrics.child(metrics.RPC_SERVER_REQUESTS, *labels).inc()
            metrics.child(metrics.RPC_SERVER_DURATION, *labels).observe(
                time.perf_counter() - started
            )

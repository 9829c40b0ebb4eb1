"""Trace context through the job queue: the enqueuing side writes the W3C context into the
Dramatiq message's options (inject_into), and TracingMiddleware in the worker continues the
trace with a consumer span around each attempt, so that one workflow stays one trace."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from internal.observability import context
from internal.observability.tracing import tracer

OPTION = "trace_context"


def inject_into(options: dict[str, Any]) -> None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if request_id := context.REQUEST_ID.get():
        carrier[context.REQUEST_ID_HEADER] = request_id
    options[OPTION] = carrier


class TracingMiddleware(dramatiq.Middleware):
    """A consumer span per message processed, child of the span that enqueued it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        carrier = dict(message.options.get(OPTION) or {})
        span = tracer().start_span(
            f"run {message.actor_name}",
            context=propagate.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        request_id = context.REQUEST_ID.set(carrier.get(context.REQUEST_ID_HEADER, ""))
        self._local.state = (span, token, request_id)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._finish(None)

    def _finish(self, exception: BaseException | None) -> None:
        state = getattr(self._local, "state", None)
        if state is None:
            return
        span, token, request_id = state
        self._local.state = None
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()
        otel_context.detach(token)
        context.REQUEST_ID.reset(request_id)

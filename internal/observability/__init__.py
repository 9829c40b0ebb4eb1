"""Traces (OpenTelemetry, OTLP), JSON logs and Prometheus metrics for every service and worker.

configure(service) at process start; service apps are wrapped by ObservedTwirp with the
TwirpObserver hook; outgoing calls go through TracingTransport/TracingSyncTransport (put under
every generated client by internal.peers; TracedHttpxTransport under a plain httpx client;
HttpCall around image_svc's storage requests); the job queue carries trace context
(inject_into, TracingMiddleware). This package provides transports, hooks and middleware; it
builds no clients."""

from __future__ import annotations

from internal.observability.asgi import ObservedTwirp, TwirpObserver
from internal.observability.context import scoped, tag
from internal.observability.http import (
    HttpCall,
    TracedHttpxTransport,
    TracingSyncTransport,
    TracingTransport,
)
from internal.observability.logs import configure_logging
from internal.observability.queue import TracingMiddleware, inject_into
from internal.observability.tracing import configure_tracing, current_span, tracer


def configure(service: str) -> None:
    """Logging and tracing for this process, as `service`."""
    configure_logging(service)
    configure_tracing(service)


__all__ = [
    "HttpCall",
    "ObservedTwirp",
    "TracedHttpxTransport",
    "TracingMiddleware",
    "TracingSyncTransport",
    "TracingTransport",
    "TwirpObserver",
    "configure",
    "configure_tracing",
    "current_span",
    "inject_into",
    "scoped",
    "tag",
    "tracer",
]

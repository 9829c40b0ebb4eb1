"""Log lines exactly as our processes write them (internal/observability/logs.py), for
checking the configurations that read them."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from internal.observability import context, logs


@dataclass(frozen=True)
class LogLine:
    text: str
    fields: dict[str, Any]
    # The trace id of the span the line was logged in; "" outside any span.
    trace_id: str


def a_line(*, in_span: bool = True) -> LogLine:
    """A WARNING line logged by user_svc, inside a span or not. Nothing global changes: the
    logger, the tracer provider and the context are this call's own."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.json_formatter())
    logger = logging.getLogger("tests.deploy.log_lines")
    logger.propagate = False
    logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("tests.deploy")

    def log() -> str:
        context.SERVICE.set("user_svc")
        if not in_span:
            logger.warning("user created")
            return ""
        with tracer.start_as_current_span("CreateUser") as span:
            logger.warning("user created")
            return format(span.get_span_context().trace_id, "032x")

    try:
        trace_id = contextvars.copy_context().run(log)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue().strip()
    return LogLine(text, json.loads(text), trace_id)

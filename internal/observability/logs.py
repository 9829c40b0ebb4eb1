"""Logging: JSON lines on stdout (python-json-logger) with the service, level, logger, trace
and span ids, request id, Twirp service and method and the workflow's ids; a readable line
for humans when stdout is a terminal (or MCSV_LOG_FORMAT=text)."""

from __future__ import annotations

import logging
import os
import sys
import time

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from internal.observability import context


class ContextFilter(logging.Filter):
    """Adds the request's context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span().get_span_context()
        record.service = context.SERVICE.get()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else ""
        record.span_id = format(span.span_id, "016x") if span.is_valid else ""
        record.request_id = context.REQUEST_ID.get()
        record.rpc_service = context.RPC_SERVICE.get()
        record.rpc_method = context.RPC_METHOD.get()
        for name, value in context.tags().items():
            setattr(record, name, value)
        return True


class _MillisecondJsonFormatter(JsonFormatter):
    """JSON lines whose time keeps milliseconds, so that Loki keeps lines in order."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}+0000"


def json_formatter() -> logging.Formatter:
    return _MillisecondJsonFormatter(
        "%(asctime)s %(levelname)s %(service)s %(name)s %(message)s %(trace_id)s %(span_id)s "
        "%(request_id)s %(rpc_service)s %(rpc_method)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        trace_id = getattr(record, "trace_id", "")
        parts = [f"trace={trace_id[:8]}"] if trace_id else []
        parts += [f"{k}={v}" for k, v in context.tags().items()]
        record.context = f"  [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure_logging(service: str, *, level: int = logging.INFO) -> None:
    context.SERVICE.set(service)
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ContextFilter())
    wants_text = os.environ.get("MCSV_LOG_FORMAT", "").lower() == "text"
    wants_json = os.environ.get("MCSV_LOG_FORMAT", "").lower() == "json"
    human = wants_text or (sys.stdout.isatty() and not wants_json)
    handler.setFormatter(TextFormatter() if human else json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, and presigned URLs are credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)

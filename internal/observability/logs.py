"""Logging: JSON lines on stdout (python-json-logger) with the service, level, logger, trace
and span ids, request id, Twirp service and method and the workflow's ids; a readable line
for humans when stdout is a terminal (or MCSV_LOG_FORMAT=text)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from internal.observability import context


class ContextFilter(logging.Filter):
    """Adds the request's context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn repeats its message with terminal colour codes; the line has it once.
        record.__dict__.pop("color_message", None)
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
    """JSON lines whose time keeps milliseconds, so that Loki keeps lines in order.

    A plain record (a str message, no exception or stack) takes a shorter path to the same
    line as python-json-logger's: its JSON encoder made once rather than per line, the time
    stamp's seconds formatted once per second (JsonFormatter.format took a tenth of a served
    Twirp call's CPU, py-spy under the P3 bench)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = JsonEncoder(ensure_ascii=self.json_ensure_ascii)
        self._fields = [(field, self._get_rename(field)) for field in self._required_fields]
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}+0000"

    def format(self, record: logging.LogRecord) -> str:
        plain = not (record.exc_info or record.exc_text or record.stack_info)
        extras = (
            self.defaults or self.static_fields or self.timestamp or self.rename_fields_keep_missing
        )
        if not plain or isinstance(record.msg, dict) or extras:
            return super().format(record)
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        values = record.__dict__
        line = {name: values.get(field) for field, name in self._fields}
        skip, rename = self._skip_fields, self.rename_fields
        for key, value in values.items():
            if key not in skip and not key.startswith("_"):
                line[rename.get(key, key)] = value
        return self.prefix + self._encoder.encode(line)


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


def _record_only_what_lines_show() -> None:
    """Records leave out what neither line shows: the caller's file, line and function (found
    by walking the stack for every record), and the thread's and process's names and ids.
    These are the switches the logging HOWTO's "Optimization" section names; a tenth of a
    log line's instructions (callgrind)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(service: str, *, level: int = logging.INFO) -> None:
    context.SERVICE.set(service)
    _record_only_what_lines_show()
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

"""The JSON log line's shorter path writes exactly what python-json-logger writes."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from internal.observability import context, logs


def _record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    exc_info = extra.pop("exc_info", None)
    record = logging.LogRecord("mcsv.twirp", logging.INFO, __file__, 7, msg, args, exc_info)  # type: ignore[arg-type]
    record.__dict__.update(extra)
    logs.ContextFilter().filter(record)
    return record


def _library_line(record: logging.LogRecord) -> str:
    """python-json-logger's own JsonFormatter.format, with our field list and time."""
    formatter = logs.json_formatter()
    assert isinstance(formatter, JsonFormatter)
    return JsonFormatter.format(formatter, record)


def test_a_plain_line_is_the_librarys_line() -> None:
    context.SERVICE.set("job_svc")
    cases = [
        _record("%s/%s %s %.1f ms", "mcsv.v1.JobService", "GetJob", "ok", 0.4,
                code="ok", duration_ms=0.4),
        _record("naïve ünïcode ✓ %s", "\u2603", user_id="u-1",
                when=datetime(2026, 1, 2, tzinfo=UTC)),
        _record("odd extras", path=b"bytes", numbers={1: 2}, _private="hidden"),
    ]  # fmt: skip
    for record in cases:
        fast = logs.json_formatter().format(record)
        assert fast == _library_line(record)
        assert json.loads(fast)["service"] == "job_svc"
    assert "_private" not in json.loads(logs.json_formatter().format(cases[2]))


def test_an_exception_line_still_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    line = json.loads(logs.json_formatter().format(record))
    assert "ValueError: boom" in line["exc_info"]
    assert line["time"].endswith("+0000") and len(line["time"]) == len(
        "2026-01-02T03:04:05.678+0000"
    )


def test_uvicorns_coloured_copy_of_the_message_is_left_out() -> None:
    record = _record("Started server process [%d]", 7,
                     color_message="Started server process [\x1b[36m%d\x1b[0m]")  # fmt: skip
    line = json.loads(logs.json_formatter().format(record))
    assert line["message"] == "Started server process [7]"
    assert "color_message" not in line

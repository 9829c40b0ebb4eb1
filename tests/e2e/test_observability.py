"""Traces and logs of real workflows: one trace per workflow across every service and through
the job queue, exported over OTLP/HTTP to a receiver on loopback (and over gRPC when asked);
every log line JSON, carrying the trace id of its spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from internal.supervisor import ROOT
from tests.e2e.otlp import Span, Spans, otlp_grpc_receiver, otlp_http_receiver
from tests.e2e.system import whole_system

pytestmark = pytest.mark.slow
WELCOME = {"client_svc", "user_svc", "job_svc", "job_worker", "email_svc"}
CONVERSION = WELCOME | {"image_svc"}


def wait_for_traces(spans: Spans, roots: int, timeout: float = 60) -> dict[str, list[Span]]:
    """Spans by trace id, once `roots` workflow traces are complete: every service of their
    workflow, through to the final callback at client_svc."""
    deadline = time.monotonic() + timeout
    while True:
        by_trace: dict[str, list[Span]] = defaultdict(list)
        for span in spans.snapshot():
            by_trace[span.trace_id].append(span)
        complete = [
            t for t in by_trace.values()
            if any(s.name.startswith("workflow") for s in t)
            and {s.service for s in t} >= (CONVERSION if _is_conversion(t) else WELCOME)
            and any(s.name == "mcsv.v1.ClientService/ReceiveNotification" for s in t)
            # Parents end after their children, so they may be exported a batch later.
            and {s.parent_id for s in t if s.parent_id} <= {s.span_id for s in t}
        ]  # fmt: skip
        if len(complete) >= roots or time.monotonic() > deadline:
            return {t[0].trace_id: t for t in complete}
        time.sleep(0.25)


def _is_conversion(trace: list[Span]) -> bool:
    return any(s.name == "workflow conversion" for s in trace)


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "demo", "--timeout", "60"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_trace_per_workflow_across_all_services_and_the_queue(tmp_path: Path) -> None:
    with otlp_http_receiver() as (endpoint, spans):
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "MCSV_LOG_FORMAT": "json",
        }
        with whole_system(tmp_path, env=otel) as system:
            demo = run_demo({**system.env, **otel})
            assert demo.returncode == 0, demo.stdout + demo.stderr
            traces = wait_for_traces(spans, roots=5)
        log = (tmp_path / "system.log").read_text()

    welcome = [t for t in traces.values() if not _is_conversion(t)]
    conversion = [t for t in traces.values() if _is_conversion(t)]
    assert len(welcome) == 3 and len(conversion) == 2, {k: len(v) for k, v in traces.items()}
    for trace in welcome + conversion:
        by_id = {s.span_id: s for s in trace}
        roots = [s for s in trace if not s.parent_id]
        assert [r.name for r in roots] in (["workflow welcome email"], ["workflow conversion"])
        assert all(s.parent_id in by_id for s in trace if s.parent_id), "a broken parent link"
        # Across the queue: the worker's run is the child of the enqueue in job_svc.
        runs = [s for s in trace if s.name.startswith("run ")]
        assert runs and all(by_id[r.parent_id].name.startswith("enqueue ") for r in runs)
        assert all(by_id[r.parent_id].service == "job_svc" for r in runs)
        assert all(
            r.service == "job_worker" and r.kind == SpanProto.SPAN_KIND_CONSUMER for r in runs
        )
        servers = [s for s in trace if s.kind == SpanProto.SPAN_KIND_SERVER]
        assert all(s.attributes["rpc.system"] == "twirp" for s in servers)
        assert all(s.attributes["rpc.twirp.code"] == "ok" for s in servers)
        assert {"render email", "deliver email"} <= {s.name for s in trace}
    for trace in conversion:
        names = {s.name for s in trace}
        assert "imagemagick convert" in names
        assert "mcsv.v1.ImageService/ConvertToPdf" in names
        fetches = [s for s in trace if s.name.startswith("GET ") and s.service == "image_svc"]
        assert fetches, "the presigned fetch is a span of the conversion"
        assert all("sig=" not in json.dumps(s.attributes) for s in trace)  # no URL credentials

    exported = {s.trace_id for s in spans.snapshot()}
    workflow_lines = 0
    for line in log.splitlines():
        _, _, payload = line.partition(" | ")
        record = json.loads(payload)  # every line is JSON
        assert {"time", "level", "service", "logger", "message"} <= record.keys()
        if record.get("rpc_method") or record.get("job_id"):
            workflow_lines += 1
            assert record["trace_id"] in exported, record
            assert record["span_id"]
    assert workflow_lines > 10


def test_traces_go_over_grpc_when_asked(tmp_path: Path) -> None:
    with otlp_grpc_receiver() as (endpoint, spans):
        script = (
            "from internal.observability import configure_tracing, tracer\n"
            "provider = configure_tracing('probe')\n"
            "with tracer().start_as_current_span('over grpc'):\n"
            "    pass\n"
            "provider.shutdown()\n"
        )
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, timeout=60)
        assert done.returncode == 0
        received = spans.snapshot()
    assert [(s.service, s.name) for s in received] == [("probe", "over grpc")]


def test_without_an_endpoint_nothing_is_exported_and_nothing_complains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = (
        "import logging, threading\n"
        "from internal.observability import configure, tracer\n"
        "configure('quiet')\n"
        "with tracer().start_as_current_span('local only'):\n"
        "    logging.getLogger('probe').info('inside a span')\n"
        "thread = threading.Thread(target=logging.getLogger('probe').info, args=('a thread',))\n"
        "thread.start(); thread.join()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "MCSV_LOG_FORMAT": "json"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    record, from_thread = (json.loads(line) for line in done.stdout.splitlines())
    assert record["message"] == "inside a span" and record["service"] == "quiet"
    assert len(record["trace_id"]) == 32  # ids still reach the logs
    assert from_thread["service"] == "quiet"  # worker threads are the same service

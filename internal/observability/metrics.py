"""Every Prometheus metric the system exports, in one place (dashboards and alerting rules in
observability/ refer to these names; a test checks that they do not refer to others).
Labels are bounded: service, RPC and method names, codes, queues, actors, templates,
outcomes, never ids."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)

# Latency buckets from 1 ms to 60 s: RPCs are milliseconds, conversions seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Twirp servers. code is "ok" or the Twirp error code.
RPC_SERVER_REQUESTS = Counter(
    "mcsv_rpc_server_requests",
    "Twirp requests served",
    ["service", "rpc_service", "method", "code"],
)
RPC_SERVER_DURATION = Histogram(
    "mcsv_rpc_server_duration_seconds", "Time to answer a Twirp request",
    ["service", "rpc_service", "method", "code"], buckets=BUCKETS,
)  # fmt: skip
RPC_SERVER_IN_FLIGHT = Gauge(
    "mcsv_rpc_server_in_flight", "Twirp requests being served", ["service", "rpc_service", "method"]
)

# Generated clients, as used by the services and workers.
RPC_CLIENT_REQUESTS = Counter(
    "mcsv_rpc_client_requests", "Twirp calls made", ["service", "rpc_service", "method", "code"]
)
RPC_CLIENT_DURATION = Histogram(
    "mcsv_rpc_client_duration_seconds", "Time for a Twirp call to be answered",
    ["service", "rpc_service", "method", "code"], buckets=BUCKETS,
)  # fmt: skip

# Jobs. Enqueued by job_svc; the rest by the workers.
JOBS_ENQUEUED = Counter("mcsv_jobs_enqueued", "Jobs enqueued", ["queue", "actor"])
JOBS_STARTED = Counter("mcsv_jobs_started", "Job attempts started", ["queue", "actor"])
JOBS_SUCCEEDED = Counter("mcsv_jobs_succeeded", "Jobs completed", ["queue", "actor"])
JOBS_FAILED = Counter("mcsv_jobs_failed", "Job attempts failed", ["queue", "actor"])
JOBS_RETRIED = Counter("mcsv_jobs_retried", "Failed attempts scheduled again", ["queue", "actor"])
JOBS_DISCARDED = Counter("mcsv_jobs_discarded", "Jobs given up on", ["queue", "actor"])
JOB_DURATION = Histogram(
    "mcsv_job_duration_seconds", "Time one job attempt took", ["queue", "actor", "outcome"],
    buckets=BUCKETS,
)  # fmt: skip
# Jobs per queue and state, as job_svc's table counts them (refreshed on each scrape).
QUEUE_DEPTH = Gauge("mcsv_queue_jobs", "Jobs per queue and state", ["queue", "state"])

# Conversions (image_svc). outcome: succeeded, rejected (bad input), failed.
CONVERSIONS = Counter("mcsv_conversions", "Conversions attempted", ["quality", "outcome"])
CONVERSION_DURATION = Histogram(
    "mcsv_conversion_duration_seconds", "Fetch, ImageMagick and upload of one conversion",
    ["quality", "outcome"], buckets=BUCKETS,
)  # fmt: skip
CONVERSION_BYTES_IN = Counter("mcsv_conversion_bytes_in", "Image bytes fetched for conversion")
CONVERSION_BYTES_OUT = Counter("mcsv_conversion_bytes_out", "PDF bytes produced")

# Emails (email_svc). outcome: delivered, duplicate (key seen before), failed.
EMAILS = Counter("mcsv_emails", "Emails handled", ["template", "backend", "outcome"])
EMAIL_DELIVERY_DURATION = Histogram(
    "mcsv_email_delivery_duration_seconds", "Render and deliver one email",
    ["template", "backend", "outcome"], buckets=BUCKETS,
)  # fmt: skip

# The names as Prometheus exposes them (counters get _total, histograms _bucket/_sum/_count).
EXPORTED_NAMES = {
    "mcsv_rpc_server_requests_total", "mcsv_rpc_server_duration_seconds",
    "mcsv_rpc_server_in_flight", "mcsv_rpc_client_requests_total",
    "mcsv_rpc_client_duration_seconds", "mcsv_jobs_enqueued_total", "mcsv_jobs_started_total",
    "mcsv_jobs_succeeded_total", "mcsv_jobs_failed_total", "mcsv_jobs_retried_total",
    "mcsv_jobs_discarded_total", "mcsv_job_duration_seconds", "mcsv_queue_jobs",
    "mcsv_conversions_total", "mcsv_conversion_duration_seconds",
    "mcsv_conversion_bytes_in_total", "mcsv_conversion_bytes_out_total", "mcsv_emails_total",
    "mcsv_email_delivery_duration_seconds",
}  # fmt: skip


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: M, *labels: str) -> M:
    """metric.labels(*labels), remembered: labels are bounded, and .labels() checks and
    looks them up under a lock on every call (several per served request)."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found

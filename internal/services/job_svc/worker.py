"""job_svc's workers: the Dramatiq actors that run email and conversion jobs (see handlers.py
for what each does), and the worker process.

A delivery of a job's message is one attempt (JobStore.start); its args are read from the row
once per attempt. A transient failure re-raises so that Dramatiq's Retries middleware (the
retry policy of the settings, set on the broker) delivers it again after an exponential
backoff; a permanent one (bad input) or the last attempt discards the job and reports the
failed outcome to user_svc, so that the client hears about every workflow. When the queue
itself gives a message up (retries spent, a worker dying on it each time, an attempt cut
short by the time limit), DiscardHook tells Jobs.given_up, which does the same. Every side
effect is idempotent, so a message delivered twice does no harm.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import prometheus_client
from mcsv.twirp import ErrorCode, TwirpError

from internal import config, observability
from internal.observability import metrics
from internal.peers import SyncPeers
from internal.queue import (
    Discarded,
    DiscardHook,
    default_middleware,
    open_broker,
    retries_middleware,
)
from internal.services.job_svc.handlers import JobHandler, Peers, job_handlers
from internal.services.job_svc.models import JobRow
from internal.services.job_svc.store import JobStore, open_jobs

log = logging.getLogger(__name__)

# Errors that another attempt cannot fix: the input itself is wrong.
PERMANENT = {
    ErrorCode.INVALID_ARGUMENT,
    ErrorCode.MALFORMED,
    ErrorCode.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION,
    ErrorCode.OUT_OF_RANGE,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.UNIMPLEMENTED,
}
NOTIFY_ATTEMPTS = 5


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def describe(exc: BaseException) -> str:
    if isinstance(exc, TwirpError):
        return f"{exc.code.value}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def backoff_seconds(attempt: int, settings: config.Settings) -> float:
    """When Dramatiq's Retries middleware will deliver again (without its jitter)."""
    delay_ms = settings.job_min_backoff_ms * 2.0 ** max(attempt - 1, 0)
    return min(delay_ms, settings.job_max_backoff_ms) / 1000


class Jobs:
    """The attempts' bookkeeping around the handlers: the store's transitions, the metrics,
    retry or discard, and reporting a discarded job."""

    def __init__(
        self, store: JobStore, handlers: dict[str, JobHandler[Any]], settings: config.Settings
    ) -> None:
        self.store, self.handlers, self.settings = store, handlers, settings

    def run(self, job_id: str, handler: JobHandler[Any]) -> None:
        observability.tag(job_id=job_id)
        job = self.store.start(job_id, this_worker())
        if job is None:
            log.info("job %s is finished or cancelled; delivery skipped", job_id)
            return
        args = handler.kind.parse_args(job.args)
        labels = (job.queue, job.actor)
        metrics.JOBS_STARTED.labels(*labels).inc()
        started = time.perf_counter()
        try:
            handler.work(job, args)
        except Exception as exc:
            permanent = isinstance(exc, TwirpError) and exc.code in PERMANENT
            final = permanent or job.attempt >= job.max_attempts
            error = describe(exc)
            retry_in = None if final else backoff_seconds(job.attempt, self.settings)
            self.store.fail(job, error, retry_in)
            metrics.JOBS_FAILED.labels(*labels).inc()
            metrics.JOB_DURATION.labels(*labels, "failed").observe(time.perf_counter() - started)
            if not final:
                metrics.JOBS_RETRIED.labels(*labels).inc()
                log.warning("job %s attempt %d failed, retrying: %s", job.id, job.attempt, error)
                raise  # Dramatiq's Retries middleware delivers it again after a backoff
            metrics.JOBS_DISCARDED.labels(*labels).inc()
            log.error("job %s discarded after attempt %d: %s", job.id, job.attempt, error)
            self._report_failure(job, args, error, handler)
            return
        self.store.complete(job)
        metrics.JOBS_SUCCEEDED.labels(*labels).inc()
        metrics.JOB_DURATION.labels(*labels, "succeeded").observe(time.perf_counter() - started)
        log.info("job %s (%s) completed in attempt %d", job.id, job.actor, job.attempt)

    def given_up(self, message: Discarded) -> None:
        """The queue gave a job's message up: the job is discarded and its failure reported,
        unless it had finished."""
        handler = self.handlers.get(message.actor_name)
        if handler is None or len(message.args) != 1:
            log.error("the queue gave up message %s, not one of our jobs", message.message_id)
            return
        job_id = str(message.args[0])
        observability.tag(job_id=job_id)
        error = message.errors[-1] if message.errors else "no error recorded"
        job = self.store.discard(job_id, f"given up by the job queue: {error}")
        if job is None:
            return
        metrics.JOBS_DISCARDED.labels(job.queue, job.actor).inc()
        log.error("job %s given up by the job queue: %s", job.id, error)
        self._report_failure(job, handler.kind.parse_args(job.args), error, handler)

    def _report_failure(self, job: JobRow, args: Any, error: str, handler: JobHandler[Any]) -> None:
        for attempt in range(1, NOTIFY_ATTEMPTS + 1):
            try:
                handler.report_failure(job, args, error)
                return
            except TwirpError as exc:
                log.warning("reporting failed job %s (try %d): %s", job.id, attempt, exc)
                if exc.code in PERMANENT:
                    break  # e.g. a conversion user_svc no longer knows: asking again won't help
                time.sleep(min(2**attempt, 30))
        log.error("job %s: the failure could not be reported to user_svc", job.id)


def open_worker_broker(settings: config.Settings, jobs: Jobs) -> dramatiq.Broker:
    """The broker of BROKER_URL with the settings' retry policy, telling `jobs` of every
    message it gives up, and the actors declared on it."""
    middleware = [
        *default_middleware(
            retries_middleware(
                settings.job_max_retries, settings.job_min_backoff_ms, settings.job_max_backoff_ms
            )
        ),
        DiscardHook(jobs.given_up),
        observability.TracingMiddleware(),
    ]
    broker = open_broker(
        settings.broker_url,
        middleware=middleware,
        visibility_timeout=settings.job_visibility_timeout_seconds,
    )
    # A conversion may legitimately take a while; Dramatiq's own limit is a backstop.
    time_limit_ms = int((settings.imagemagick_timeout_seconds + 120) * 1000)
    for handler in jobs.handlers.values():
        declare = dramatiq.actor(
            actor_name=handler.kind.actor,
            queue_name=handler.kind.queue,
            broker=broker,
            time_limit=time_limit_ms,
        )
        declare(_actor(jobs, handler))
    return broker


def _actor(jobs: Jobs, handler: JobHandler[Any]) -> Callable[[str], None]:
    def run(job_id: str) -> None:
        jobs.run(job_id, handler)

    return run


def run_worker(threads: int = 4) -> None:
    """Runs a job worker (job_svc's actors) until SIGTERM/SIGINT, finishing jobs in hand."""
    observability.configure("job_worker")
    settings = config.load()
    host, port = settings.worker_metrics_bind()
    prometheus_client.start_http_server(port, addr=host)
    peers = SyncPeers(settings, identity="job_svc")  # the workers act as job_svc
    jobs = Jobs(open_jobs(settings), job_handlers(Peers.connect(peers)), settings)
    broker = open_worker_broker(settings, jobs)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    log.info("job worker %s running %d threads on %s", this_worker(), threads,
             settings.broker_url)  # fmt: skip
    stop.wait()
    log.info("job worker stopping: finishing the jobs in hand")
    worker.stop()
    broker.close()
    peers.close()

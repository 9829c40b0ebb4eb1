"""job_svc's workers: the Dramatiq actors that run jobs (see handlers.py for what each kind
does), and the worker process.

A delivered message (job id, dispatch number) is one attempt, if the store lets it start
(JobStore.start: the job is still to run and the message is its current one). When the
attempt fails the retry policy (policy.py) decides: the store records the decision, and the
worker sends the job's next message itself, delayed by the backoff, or discards the job; a
job that ends (completed, discarded) enqueues the report of its outcome as a job of its own,
whose first attempt the worker makes right away, in the same thread (one RPC, no message);
should it fail, the report is retried like any job. A success's report is made before the
success is recorded, so that one transaction records both (a worker that dies in between
leaves the job executing: its message comes back, and the idempotent work and report are
done again). So nothing waits inside a worker thread, and the queue keeps no retry state:
the broker has no Retries middleware. When the queue itself gives a message up (the SQLite
broker's delivery cap, an age limit), DiscardHook tells Jobs.given_up, which discards the job
and reports it. Every side effect is idempotent, so a message delivered twice does no harm.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import prometheus_client
from dramatiq.middleware.time_limit import TimeLimitExceeded
from mcsv.v1 import job_pb2

from internal import config, observability
from internal.observability import metrics
from internal.peers import SyncPeers
from internal.queue import Discarded, DiscardHook, default_middleware, open_broker
from internal.services.common.memory import collect_less_often
from internal.services.job_svc import outcomes
from internal.services.job_svc.dispatch import Dispatcher
from internal.services.job_svc.handlers import JobHandler, Peers, job_handlers
from internal.services.job_svc.models import REPORT, JobRow
from internal.services.job_svc.policy import RetryPolicy, attempt_time_limit, describe
from internal.services.job_svc.store import EarlyReport, JobStore, open_jobs
from internal.signals import StopSignals

log = logging.getLogger(__name__)


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Jobs:
    """The attempts' bookkeeping around the handlers: the store's transitions, the retry
    policy's decisions, the messages they need sent, and the metrics."""

    def __init__(
        self,
        store: JobStore,
        handlers: dict[str, JobHandler[Any]],
        policy: RetryPolicy,
    ) -> None:
        self.store, self.handlers, self.policy = store, handlers, policy
        self.dispatcher: Dispatcher | None = None  # set once the broker exists

    def run(self, job_id: str, dispatch: int, handler: JobHandler[Any]) -> None:
        """One delivery of a job's message."""
        observability.tag(job_id=job_id)
        try:
            self._attempt(job_id, dispatch, handler)
        except Exception:
            # The jobs table could not be read or written: the same message comes back later
            # and the attempt is made (or its outcome recorded) again.
            delay = self.policy.backoff(1)
            log.exception("job %s: bookkeeping failed; delivering again in %.1fs", job_id, delay)
            self._dispatcher().send_again(handler.kind.actor, job_id, dispatch, round(delay * 1000))

    def _attempt(self, job_id: str, dispatch: int, handler: JobHandler[Any]) -> None:
        job = self.store.start(job_id, dispatch, this_worker())
        if job is None:
            log.info("job %s: message %d is not the job's to run; skipped", job_id, dispatch)
            return
        self._run_started(job, handler)

    def _run_started(self, job: JobRow, handler: JobHandler[Any]) -> None:
        """Makes the attempt the store has started, and records how it went."""
        args = handler.kind.parse_args(job.args)
        metrics.child(metrics.JOBS_STARTED, job.queue, job.actor).inc()
        started = time.perf_counter()
        try:
            report = handler.work(job, args)
        except (Exception, TimeLimitExceeded) as exc:
            _attempt_ended(job, time.perf_counter() - started, succeeded=False)
            self._failed(job, exc)
            return
        duration = time.perf_counter() - started
        early = self._report_early(job, report) if report is not None and job.version else None
        to_send = self.store.complete(job, report, early)
        _attempt_ended(job, duration, succeeded=True)
        self._follow_up(to_send, early)

    def _report_early(self, job: JobRow, report: job_pb2.ReportJobArgs) -> EarlyReport:
        """Makes the first attempt of a success's report before the success is recorded,
        stamped with the version its completion will have unless the job's history moves
        meanwhile (then the store enqueues it again, with the right one)."""
        report_id, version, at = uuid.uuid4().hex, job.version + 1, time.time()
        stamped = outcomes.stamped(report, version, at)
        error: BaseException | None = None
        with observability.scoped(job_id=report_id):
            try:
                self.handlers[REPORT.actor].work(job, stamped)
            except (Exception, TimeLimitExceeded) as exc:
                error = exc
        return EarlyReport(report_id, stamped, version, at, time.time(), error)

    def _failed(self, job: JobRow, exc: BaseException) -> None:
        error = describe(exc)
        retry_until = job.retry_until or self.policy.retry_until(job.inserted_at)
        decision = self.policy.decide(exc, job.attempt, time.time(), retry_until)
        to_send = self.store.fail(job, error, decision)
        labels = (job.queue, job.actor)
        if decision.retry_in is not None:
            metrics.child(metrics.JOBS_RETRIED, *labels).inc()
            log.warning("job %s attempt %d failed (%s): %s", job.id, job.attempt,
                        decision.reason, error)  # fmt: skip
        else:
            metrics.child(metrics.JOBS_DISCARDED, *labels).inc()
            log.error("job %s discarded after attempt %d (%s): %s", job.id, job.attempt,
                      decision.reason, error)  # fmt: skip
        self._follow_up(to_send)

    def given_up(self, message: Discarded) -> None:
        """The queue gave a job's message up: the job is discarded and its failure reported,
        unless it had finished or the message was not its current one."""
        if message.actor_name not in self.handlers or not message.args:
            log.error("the queue gave up message %s, not one of our jobs", message.message_id)
            return
        job_id = str(message.args[0])
        dispatch = int(message.args[1]) if len(message.args) > 1 else 0
        observability.tag(job_id=job_id)
        job, to_send = self.store.give_up(job_id, dispatch, message.reason, this_worker())
        if job is None:
            return
        metrics.child(metrics.JOBS_DISCARDED, job.queue, job.actor).inc()
        log.error("job %s given up by the job queue: %s", job.id, message.reason)
        self._follow_up(to_send)

    def _follow_up(self, jobs: list[JobRow], early: EarlyReport | None = None) -> None:
        """Sends the messages of the jobs a transition made due, and makes the attempts it
        started here (a report, right after the job it reports on), or records how the one
        made already (`early`) went."""
        for job in jobs:
            if early is not None and job.id == early.id:
                self._reported_early(job, early)
            elif job.state == job_pb2.JOB_STATE_EXECUTING:
                observability.tag(job_id=job.id)
                metrics.child(metrics.JOBS_ENQUEUED, job.queue, job.actor).inc()
                self._run_started(job, self.handlers[job.actor])
            else:
                self._dispatcher().send_all([job])

    def _reported_early(self, job: JobRow, early: EarlyReport) -> None:
        """The metrics and log of a report made before its job was recorded, or its failure,
        as any attempt's."""
        observability.tag(job_id=job.id)
        metrics.child(metrics.JOBS_ENQUEUED, job.queue, job.actor).inc()
        metrics.child(metrics.JOBS_STARTED, job.queue, job.actor).inc()
        duration = early.finished_at - early.started_at
        _attempt_ended(job, duration, succeeded=early.error is None)
        if early.error is not None:
            self._failed(job, early.error)

    def _dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            raise RuntimeError("Jobs.dispatcher is set by open_worker_broker")
        return self.dispatcher


def _attempt_ended(job: JobRow, seconds: float, *, succeeded: bool) -> None:
    """An attempt's outcome in the metrics, and a success's log line."""
    labels = (job.queue, job.actor)
    metrics.child(metrics.JOBS_SUCCEEDED if succeeded else metrics.JOBS_FAILED, *labels).inc()
    metrics.child(metrics.JOB_DURATION, *labels, "succeeded" if succeeded else "failed").observe(
        seconds
    )
    if succeeded:
        log.info("job %s (%s) completed in attempt %d", job.id, job.actor, job.attempt)


def open_worker_broker(settings: config.Settings, jobs: Jobs) -> dramatiq.Broker:
    """The broker of BROKER_URL, without Dramatiq's retries (the jobs' policy owns them),
    telling `jobs` of every message it gives up, and the actors declared on it."""
    middleware = [
        *default_middleware(),
        DiscardHook(jobs.given_up),
        observability.TracingMiddleware(),
    ]
    options: dict[str, Any] = {}
    if settings.broker_url.startswith("sqlite:"):
        options["max_deliveries"] = settings.job_max_deliveries or None
    broker = open_broker(
        settings.broker_url,
        middleware=middleware,
        visibility_timeout=settings.job_visibility_timeout_seconds,
        **options,
    )
    jobs.dispatcher = Dispatcher(jobs.store, broker, settings.rpc_timeout_seconds)
    # A conversion may legitimately take a while; Dramatiq's own limit is a backstop.
    time_limit_ms = int(attempt_time_limit(settings) * 1000)
    for handler in jobs.handlers.values():
        declare = dramatiq.actor(
            actor_name=handler.kind.actor,
            queue_name=handler.kind.queue,
            broker=broker,
            time_limit=time_limit_ms,
            priority=handler.kind.priority,
        )
        declare(_actor(jobs, handler))
    return broker


def _actor(jobs: Jobs, handler: JobHandler[Any]) -> Callable[..., None]:
    def run(job_id: str, dispatch: int = 0) -> None:
        jobs.run(job_id, dispatch, handler)

    return run


def run_worker(threads: int = 4) -> None:
    """Runs a job worker (job_svc's actors) until SIGTERM/SIGINT, finishing jobs in hand."""
    observability.configure("job_worker")
    settings = config.load()
    host, port = settings.worker_metrics_bind()
    prometheus_client.start_http_server(port, addr=host)
    peers = SyncPeers(settings, identity="job_svc")  # the workers act as job_svc
    jobs = Jobs(open_jobs(settings), job_handlers(Peers.connect(peers)),
                RetryPolicy.from_settings(settings))  # fmt: skip
    broker = open_worker_broker(settings, jobs)
    stop = StopSignals()
    worker = dramatiq.Worker(broker, worker_threads=threads)
    collect_less_often()
    worker.start()
    log.info("job worker %s running %d threads on %s", this_worker(), threads,
             settings.broker_url)  # fmt: skip
    stop.wait()
    log.info("job worker stopping: finishing the jobs in hand")
    worker.stop()
    broker.close()
    peers.close()

"""job_svc's workers: the Dramatiq actors that run email and conversion jobs.

A delivery of a job's message is one attempt (JobStore.start). A transient failure re-raises
so that Dramatiq's Retries middleware delivers it again after an exponential backoff; a
permanent one (bad input) or the last attempt discards the job and reports the failed outcome
to user_svc, so that the client hears about every workflow. Every side effect is idempotent
(keyed by the job's idempotency key), so a message delivered twice does no harm.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import prometheus_client
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, email_pb2, image_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.image_twirp import ImageServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal import config, observability
from internal.observability import metrics
from internal.peers import SyncPeers
from internal.queue import open_broker
from internal.services.common.times import now
from internal.services.job_svc.models import CONVERSION, EMAIL, JobRow
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


@dataclass
class Peers:
    """The services a worker calls."""

    users: UserServiceClient
    emails: EmailServiceClient
    images: ImageServiceClient

    @classmethod
    def connect(cls, peers: SyncPeers) -> Peers:
        settings = peers.settings
        return cls(
            users=peers.client(UserServiceClient),
            emails=peers.client(EmailServiceClient),
            # A conversion takes as long as ImageMagick may take, and then some.
            images=peers.client(
                ImageServiceClient,
                timeout=settings.rpc_timeout_seconds + settings.imagemagick_timeout_seconds,
            ),
        )


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
    """What the actors do, given the store, the peers and the retry policy."""

    def __init__(self, store: JobStore, peers: Peers, settings: config.Settings) -> None:
        self.store, self.peers, self.settings = store, peers, settings

    def run(
        self, job_id: str, handle: Callable[[JobRow], None], report: Callable[..., None]
    ) -> None:
        observability.tag(job_id=job_id)
        job = self.store.start(job_id, this_worker())
        if job is None:
            log.info("job %s is finished or cancelled; delivery skipped", job_id)
            return
        labels = (job.queue, job.actor)
        metrics.JOBS_STARTED.labels(*labels).inc()
        started = time.perf_counter()
        try:
            handle(job)
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
            self._report_failure(job, error, report)
            return
        self.store.complete(job)
        metrics.JOBS_SUCCEEDED.labels(*labels).inc()
        metrics.JOB_DURATION.labels(*labels, "succeeded").observe(time.perf_counter() - started)
        log.info("job %s (%s) completed in attempt %d", job.id, job.actor, job.attempt)

    def _report_failure(self, job: JobRow, error: str, report: Callable[..., None]) -> None:
        for attempt in range(1, NOTIFY_ATTEMPTS + 1):
            try:
                report(job, outcome=common_pb2.OUTCOME_FAILED, error=error)
                return
            except TwirpError as exc:
                log.warning("reporting failed job %s (try %d): %s", job.id, attempt, exc)
                time.sleep(min(2**attempt, 30))
        log.error("job %s: the failure could not be reported to user_svc", job.id)

    # Email jobs (workflow 1)

    def deliver_email(self, job: JobRow) -> None:
        args = job_pb2.EmailJobArgs.FromString(bytes(job.args))
        observability.tag(user_id=args.user_id)
        delivered = self.peers.emails.deliver_email(
            email_pb2.DeliverEmailRequest(
                idempotency_key=args.idempotency_key,
                user_id=args.user_id,
                user_name=args.user_name,
                recipient=args.recipient,
                template=args.template,
                variables=args.variables,
            )
        )
        self.report_email(job, outcome=common_pb2.OUTCOME_SUCCEEDED, email_id=delivered.email.id)

    def report_email(
        self,
        job: JobRow,
        *,
        outcome: common_pb2.Outcome,
        email_id: str = "",
        error: str = "",
    ) -> None:
        args = job_pb2.EmailJobArgs.FromString(bytes(job.args))
        self.peers.users.notify_email_delivered(
            user_pb2.NotifyEmailDeliveredRequest(
                delivery=common_pb2.EmailDelivery(
                    user_id=args.user_id,
                    recipient=args.recipient,
                    template=args.template,
                    outcome=outcome,
                    email_id=email_id,
                    error=error,
                    job_id=job.id,
                    finished_at=now(),
                )
            )
        )

    # Conversion jobs (workflow 2)

    def convert_image(self, job: JobRow) -> None:
        args = job_pb2.ConversionJobArgs.FromString(bytes(job.args))
        observability.tag(user_id=args.user_id, conversion_id=args.conversion_id)
        known = self.peers.users.get_conversion(
            user_pb2.GetConversionRequest(id=args.conversion_id)
        )
        if known.conversion.state == user_pb2.CONVERSION_STATE_SUCCEEDED:
            # Delivered again after an attempt that finished the work but died before
            # recording it: the original is gone and the PDF, email and report exist.
            log.info("conversion %s already succeeded; nothing to do", args.conversion_id)
            return
        converted = self.peers.images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id=args.conversion_id,
                source_url=args.source_url,
                pdf_upload_url=args.pdf_upload_url,
                options=args.options,
            )
        )
        self.peers.emails.deliver_email(
            email_pb2.DeliverEmailRequest(
                idempotency_key=f"conversion:{args.conversion_id}",
                user_id=args.user_id,
                user_name=args.user_name,
                recipient=args.user_email,
                template=common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE,
                variables={
                    "pdf_url": args.pdf_download_url,
                    "filename": args.filename,
                    "pdf_bytes": str(converted.result.pdf_bytes),
                    "expires_at": args.pdf_download_url_expires_at.ToJsonString(),
                },
            )
        )
        self.report_conversion(job, outcome=common_pb2.OUTCOME_SUCCEEDED, result=converted.result)

    def report_conversion(
        self,
        job: JobRow,
        *,
        outcome: common_pb2.Outcome,
        result: common_pb2.ConversionResult | None = None,
        error: str = "",
    ) -> None:
        args = job_pb2.ConversionJobArgs.FromString(bytes(job.args))
        succeeded = outcome == common_pb2.OUTCOME_SUCCEEDED
        self.peers.users.conversion_complete(
            user_pb2.ConversionCompleteRequest(
                report=common_pb2.ConversionReport(
                    conversion_id=args.conversion_id,
                    user_id=args.user_id,
                    outcome=outcome,
                    pdf_url=args.pdf_download_url if succeeded else "",
                    pdf_url_expires_at=args.pdf_download_url_expires_at if succeeded else None,
                    result=result,
                    error=error,
                    job_id=job.id,
                    finished_at=now(),
                )
            )
        )


def declare_actors(broker: dramatiq.Broker, jobs: Jobs, settings: config.Settings) -> None:
    """Declares the actors on the broker, with the retry policy from the settings."""
    options: dict[str, Any] = {
        "max_retries": settings.job_max_retries,
        "min_backoff": settings.job_min_backoff_ms,
        "max_backoff": settings.job_max_backoff_ms,
        # A conversion may legitimately take a while; Dramatiq's own limit is a backstop.
        "time_limit": int((settings.imagemagick_timeout_seconds + 120) * 1000),
    }

    def deliver_email(job_id: str) -> None:
        jobs.run(job_id, jobs.deliver_email, jobs.report_email)

    def convert_image(job_id: str) -> None:
        jobs.run(job_id, jobs.convert_image, jobs.report_conversion)

    for kind, function in ((EMAIL, deliver_email), (CONVERSION, convert_image)):
        declare = dramatiq.actor(
            actor_name=kind.actor, queue_name=kind.queue, broker=broker, **options
        )
        declare(function)


def run_worker(threads: int = 4) -> None:
    """Runs a job worker (job_svc's actors) until SIGTERM/SIGINT, finishing jobs in hand."""
    observability.configure("job_worker")
    settings = config.load()
    broker = open_broker(
        settings.broker_url, visibility_timeout=settings.job_visibility_timeout_seconds
    )
    broker.add_middleware(observability.TracingMiddleware())
    host, port = settings.worker_metrics_bind()
    prometheus_client.start_http_server(port, addr=host)
    peers = SyncPeers(settings)
    jobs = Jobs(open_jobs(settings), Peers.connect(peers), settings)
    declare_actors(broker, jobs, settings)
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

"""job_svc's RPCs: enqueue email and conversion jobs (the job is a row; its Dramatiq message
carries only the job id), read them with their history, list, cancel and retry them, and
count them per queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from mcsv.twirp import Context
from mcsv.v1 import job_pb2
from opentelemetry.trace import SpanKind

from internal import observability
from internal.observability import metrics
from internal.services.common.errors import invalid_argument, require
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.job_svc.models import (
    CONVERSION,
    EMAIL,
    KINDS,
    ArgsT,
    JobKind,
    JobRow,
    event_message,
    job_message,
)
from internal.services.job_svc.store import JobStore


class JobService:
    """The JobService RPCs. `send` puts a job's message on the broker."""

    def __init__(self, store: JobStore, send: Callable[[JobRow], None]) -> None:
        self.store = store
        self.send = send

    def enqueue_email(
        self, ctx: Context, request: job_pb2.EnqueueEmailRequest
    ) -> job_pb2.EnqueueEmailResponse:
        args = request.args
        key = require(args.idempotency_key, "args.idempotency_key", max_length=200)
        require(args.recipient, "args.recipient", max_length=320)
        if args.template == 0:
            raise invalid_argument("args.template", "is required")
        return job_pb2.EnqueueEmailResponse(job=self._enqueue(EMAIL, args, f"email:{key}"))

    def enqueue_conversion(
        self, ctx: Context, request: job_pb2.EnqueueConversionRequest
    ) -> job_pb2.EnqueueConversionResponse:
        args = request.args
        conversion_id = require(args.conversion_id, "args.conversion_id", max_length=200)
        args.ClearField("pdf_upload_url")  # no longer used: it is minted when the job runs
        for name in ("source_url", "pdf_download_url", "user_email"):
            require(getattr(args, name), f"args.{name}", max_length=4000)
        job = self._enqueue(CONVERSION, args, f"conversion:{conversion_id}")
        return job_pb2.EnqueueConversionResponse(job=job)

    def _enqueue(self, kind: JobKind[ArgsT], args: ArgsT, key: str) -> job_pb2.Job:
        job, created = self.store.enqueue(kind, args, key)
        observability.tag(job_id=job.id)
        if created or job.state == job_pb2.JOB_STATE_AVAILABLE:
            # Sent again for a repeated request whose job has not started: the first send
            # may have failed after the row was written. Running twice is harmless (start()
            # skips finished jobs; side effects are idempotent).
            self.send(job)
        return job_message(job)

    def get_job(self, ctx: Context, request: job_pb2.GetJobRequest) -> job_pb2.GetJobResponse:
        job, events = self.store.get(require(request.id, "id"))
        return job_pb2.GetJobResponse(
            job=job_message(job), events=[event_message(e) for e in events]
        )

    def list_jobs(self, ctx: Context, request: job_pb2.ListJobsRequest) -> job_pb2.ListJobsResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        rows, more = self.store.page(request.queue, request.state, request.actor, size, offset)
        return job_pb2.ListJobsResponse(
            jobs=[job_message(row) for row in rows],
            next_page_token=next_page_token(offset, size, more),
        )

    def cancel_job(
        self, ctx: Context, request: job_pb2.CancelJobRequest
    ) -> job_pb2.CancelJobResponse:
        job = self.store.cancel(require(request.id, "id"), request.reason or "cancelled by request")
        return job_pb2.CancelJobResponse(job=job_message(job))

    def retry_job(self, ctx: Context, request: job_pb2.RetryJobRequest) -> job_pb2.RetryJobResponse:
        job = self.store.retry(require(request.id, "id"))
        self.send(job)
        return job_pb2.RetryJobResponse(job=job_message(job))

    def get_queue_stats(
        self, ctx: Context, request: job_pb2.GetQueueStatsRequest
    ) -> job_pb2.GetQueueStatsResponse:
        return job_pb2.GetQueueStatsResponse(queues=self.store.stats(request.queue))


def sender(broker: dramatiq.Broker) -> Callable[[JobRow], None]:
    """Puts a job's message on its queue: the job id is all the worker needs."""

    def send(job: JobRow) -> None:
        with observability.tracer().start_as_current_span(
            f"enqueue {job.actor}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.destination.name": job.queue,
                "mcsv.job_id": job.id,
            },
        ):
            options: dict[str, Any] = {}
            observability.inject_into(options)
            broker.enqueue(
                dramatiq.Message(
                    queue_name=job.queue,
                    actor_name=job.actor,
                    args=(job.id,),
                    kwargs={},
                    options=options,
                )
            )
        metrics.JOBS_ENQUEUED.labels(job.queue, job.actor).inc()

    for kind in KINDS.values():
        broker.declare_queue(kind.queue)
    return send

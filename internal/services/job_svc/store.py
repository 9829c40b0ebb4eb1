"""job_svc: background jobs. Every job is a row (its args, state, attempts, errors) with an
append-only history of events; the Dramatiq message only carries the job id. The RPCs
enqueue and manage jobs; the workers (internal/services/job_svc/worker.py) run them through
JobStore's transitions."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dramatiq
import peewee
from google.protobuf.message import Message
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp_server import JobServiceServer
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette

from internal import config, observability
from internal.data import create_tables, insert_once, locked, open_database, write_transaction
from internal.observability import metrics
from internal.services.common.app import service_app
from internal.services.common.errors import found, invalid_argument, require
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.common.times import timestamp

NAME = "job_svc"
S = job_pb2.JobState
E = job_pb2.JobEventType
FINAL_STATES = (S.JOB_STATE_COMPLETED, S.JOB_STATE_DISCARDED, S.JOB_STATE_CANCELLED)


@dataclass(frozen=True)
class JobKind:
    """One kind of job: where it is queued, which actor runs it, and what its args are."""

    queue: str
    actor: str
    args_field: str  # the Job.args oneof member
    args_type: type[Message]


EMAIL = JobKind("emails", "deliver_email", "email", job_pb2.EmailJobArgs)
CONVERSION = JobKind("conversions", "convert_image", "conversion", job_pb2.ConversionJobArgs)
KINDS = {kind.actor: kind for kind in (EMAIL, CONVERSION)}


class JobRow(peewee.Model):
    id = peewee.TextField(primary_key=True)
    idempotency_key = peewee.TextField(unique=True)
    queue = peewee.TextField(index=True)
    actor = peewee.TextField()
    state = peewee.IntegerField(index=True)
    attempt = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField()
    args = peewee.BlobField()
    errors = peewee.TextField(default="[]")  # JSON: [{attempt, message, failed_at}]
    inserted_at = peewee.DoubleField(index=True)
    scheduled_at = peewee.DoubleField(null=True)
    attempted_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    worker = peewee.TextField(default="")

    class Meta:
        table_name = "jobs"


class JobEventRow(peewee.Model):
    job_id = peewee.TextField(index=True)
    sequence = peewee.IntegerField()
    type = peewee.IntegerField()
    occurred_at = peewee.DoubleField()
    attempt = peewee.IntegerField(default=0)
    message = peewee.TextField(default="")
    worker = peewee.TextField(default="")

    class Meta:
        table_name = "job_events"
        indexes = ((("job_id", "sequence"), True),)


MODELS = [JobRow, JobEventRow]


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore:
    """The jobs table and its transitions; each transition records its event."""

    def __init__(self, database: peewee.Database, max_attempts: int) -> None:
        self.database = database
        self.max_attempts = max_attempts

    def enqueue(self, kind: JobKind, args: Message, idempotency_key: str) -> tuple[JobRow, bool]:
        """The job for this key: created (True) or the one enqueued before (False)."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job, created = insert_once(
                JobRow,
                JobRow.idempotency_key,
                id=uuid.uuid4().hex,
                idempotency_key=idempotency_key,
                queue=kind.queue,
                actor=kind.actor,
                state=S.JOB_STATE_AVAILABLE,
                max_attempts=self.max_attempts,
                args=args.SerializeToString(),
                inserted_at=now,
                scheduled_at=now,
            )
            if created:
                self._event(job, E.JOB_EVENT_TYPE_ENQUEUED, now)
        return job, created

    def start(self, job_id: str, worker: str) -> JobRow | None:
        """Marks a delivery of the job as a new attempt; None when it must not run (finished
        or cancelled, e.g. a message delivered again after the job completed)."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job: JobRow | None = locked(JobRow.select().where(JobRow.id == job_id)).first()
            if job is None or job.state in FINAL_STATES:
                return None
            job.state, job.attempt, job.attempted_at, job.worker = (
                S.JOB_STATE_EXECUTING, job.attempt + 1, now, worker
            )  # fmt: skip
            job.save()
            self._event(job, E.JOB_EVENT_TYPE_STARTED, now, worker=worker)
        return job

    def complete(self, job: JobRow) -> None:
        self._finish(job, S.JOB_STATE_COMPLETED, E.JOB_EVENT_TYPE_COMPLETED)

    def fail(self, job: JobRow, error: str, retry_in: float | None) -> None:
        """Records a failed attempt: retryable (retry_in seconds from now) or, with None,
        discarded for good."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            fresh = locked(JobRow.select().where(JobRow.id == job.id)).get()
            errors = json.loads(fresh.errors)
            errors.append({"attempt": fresh.attempt, "message": error, "failed_at": now})
            fresh.errors = json.dumps(errors)
            self._event(fresh, E.JOB_EVENT_TYPE_FAILED, now, message=error, worker=fresh.worker)
            if fresh.state == S.JOB_STATE_CANCELLED:
                pass  # cancelled while running: stays cancelled, is not retried
            elif retry_in is None:
                fresh.state, fresh.finished_at = S.JOB_STATE_DISCARDED, now
                self._event(fresh, E.JOB_EVENT_TYPE_DISCARDED, now, message=error)
            else:
                fresh.state, fresh.scheduled_at = S.JOB_STATE_RETRYABLE, now + retry_in
                self._event(
                    fresh, E.JOB_EVENT_TYPE_RETRY_SCHEDULED, now, message=f"in {retry_in:.1f}s"
                )
            fresh.save()

    def cancel(self, job_id: str, reason: str) -> JobRow:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state in FINAL_STATES:
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {S.Name(job.state)} and cannot be cancelled",
                )
            job.state, job.finished_at = S.JOB_STATE_CANCELLED, now
            job.save()
            self._event(job, E.JOB_EVENT_TYPE_CANCELLED, now, message=reason)
        return job

    def retry(self, job_id: str) -> JobRow:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state not in (S.JOB_STATE_DISCARDED, S.JOB_STATE_CANCELLED):
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {S.Name(job.state)}; only discarded or cancelled jobs "
                    "can be retried",
                )
            job.state, job.attempt, job.scheduled_at, job.finished_at = (
                S.JOB_STATE_AVAILABLE, 0, now, None
            )  # fmt: skip
            job.save()
            self._event(job, E.JOB_EVENT_TYPE_RETRIED, now)
        return job

    def get(self, job_id: str) -> tuple[JobRow, list[JobEventRow]]:
        with self.database.connection_context():
            job = self._get(job_id)
            events = list(
                JobEventRow.select()
                .where(JobEventRow.job_id == job_id)
                .order_by(JobEventRow.sequence)
            )
        return job, events

    def page(
        self, queue: str, state: int, actor: str, limit: int, offset: int
    ) -> tuple[list[JobRow], bool]:
        """A page of jobs, newest first, and whether more follow."""
        query = JobRow.select().order_by(JobRow.inserted_at.desc(), JobRow.id)
        if queue:
            query = query.where(JobRow.queue == queue)
        if state:
            query = query.where(JobRow.state == state)
        if actor:
            query = query.where(JobRow.actor == actor)
        with self.database.connection_context():
            rows = list(query.offset(offset).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    def stats(self, queue: str) -> list[job_pb2.QueueStats]:
        query = JobRow.select(JobRow.queue, JobRow.state, peewee.fn.COUNT(JobRow.id).alias("n"))
        if queue:
            query = query.where(JobRow.queue == queue)
        by_queue: dict[str, job_pb2.QueueStats] = {}
        with self.database.connection_context():
            counted: Iterable[tuple[str, int, int]] = query.group_by(  # type: ignore[assignment]
                JobRow.queue, JobRow.state
            ).tuples()  # the stubs do not know tuples() yields tuples
            for queue_name, state, count in counted:
                stats = by_queue.setdefault(queue_name, job_pb2.QueueStats(queue=queue_name))
                field = S.Name(state).removeprefix("JOB_STATE_").lower()
                setattr(stats, field, getattr(stats, field) + count)
        return [by_queue[name] for name in sorted(by_queue)]

    def _get(self, job_id: str) -> JobRow:
        job: JobRow | None = locked(JobRow.select().where(JobRow.id == job_id)).first()
        return found(job, "job", job_id)

    def _finish(self, job: JobRow, state: int, event: int) -> None:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            fresh = locked(JobRow.select().where(JobRow.id == job.id)).get()
            if fresh.state != S.JOB_STATE_CANCELLED:
                fresh.state, fresh.finished_at = state, now
                fresh.save()
            self._event(fresh, event, now, worker=fresh.worker)

    def _event(
        self, job: JobRow, type_: int, at: float, *, message: str = "", worker: str = ""
    ) -> None:
        last = (
            JobEventRow.select(peewee.fn.MAX(JobEventRow.sequence))
            .where(JobEventRow.job_id == job.id)
            .scalar()
        )
        JobEventRow.create(
            job_id=job.id,
            sequence=(last or 0) + 1,
            type=type_,
            occurred_at=at,
            attempt=job.attempt,
            message=message,
            worker=worker,
        )


def job_message(job: JobRow) -> job_pb2.Job:
    kind = KINDS[job.actor]
    message = job_pb2.Job(
        id=job.id,
        queue=job.queue,
        actor=job.actor,
        state=S.Name(job.state),
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker=job.worker,
        inserted_at=timestamp(job.inserted_at),
        scheduled_at=timestamp(job.scheduled_at),
        attempted_at=timestamp(job.attempted_at),
        finished_at=timestamp(job.finished_at),
        errors=[
            job_pb2.JobAttemptError(
                attempt=e["attempt"], message=e["message"], failed_at=timestamp(e["failed_at"])
            )
            for e in json.loads(job.errors)
        ],
    )
    getattr(message, kind.args_field).ParseFromString(bytes(job.args))
    return message


def event_message(event: JobEventRow) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        job_id=event.job_id,
        sequence=event.sequence,
        type=E.Name(event.type),
        occurred_at=timestamp(event.occurred_at),
        attempt=event.attempt,
        message=event.message,
        worker=event.worker,
    )


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
        for name in ("source_url", "pdf_upload_url", "pdf_download_url", "user_email"):
            require(getattr(args, name), f"args.{name}", max_length=4000)
        job = self._enqueue(CONVERSION, args, f"conversion:{conversion_id}")
        return job_pb2.EnqueueConversionResponse(job=job)

    def _enqueue(self, kind: JobKind, args: Message, key: str) -> job_pb2.Job:
        job, created = self.store.enqueue(kind, args, key)
        observability.tag(job_id=job.id)
        if created or job.state == S.JOB_STATE_AVAILABLE:
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


def open_jobs(settings: config.Settings) -> JobStore:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, MODELS, service=NAME)
    return JobStore(database, max_attempts=settings.job_max_retries + 1)


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


def create_app(settings: config.Settings, broker: dramatiq.Broker) -> Starlette:
    store = open_jobs(settings)

    async def database_ready() -> str | None:
        with store.database.connection_context():
            JobRow.select().limit(1).execute()
        return None

    def count_queues() -> None:
        for stats in store.stats(""):
            for state in ("available", "scheduled", "executing", "retryable", "completed",
                          "discarded", "cancelled"):  # fmt: skip
                metrics.QUEUE_DEPTH.labels(stats.queue, state).set(getattr(stats, state))

    service = JobService(store, sender(broker))
    return service_app(
        NAME,
        [JobServiceServer(service=service)],
        ready_checks={"database": database_ready},
        on_shutdown=[_closer(broker)],
        before_metrics=count_queues,
    )


def _closer(broker: dramatiq.Broker) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        broker.close()

    return close

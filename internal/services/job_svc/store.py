"""The jobs table's transitions (JobStore): enqueue once per idempotency key, start an
attempt, complete, fail (retry or discard), cancel, retry by hand; each records its event.
job_svc's RPCs read and write jobs through it, and so do the workers that run them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

import peewee
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import job_pb2

from internal import config
from internal.data import create_tables, insert_once, locked, open_database, write_transaction
from internal.services.common.errors import found
from internal.services.job_svc.models import (
    FINAL_STATES,
    MODELS,
    NAME,
    ArgsT,
    JobEventRow,
    JobKind,
    JobRow,
)


class JobStore:
    """The jobs table and its transitions; each transition records its event."""

    def __init__(self, database: peewee.Database, max_attempts: int) -> None:
        self.database = database
        self.max_attempts = max_attempts

    def enqueue(
        self, kind: JobKind[ArgsT], args: ArgsT, idempotency_key: str
    ) -> tuple[JobRow, bool]:
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
                state=job_pb2.JOB_STATE_AVAILABLE,
                max_attempts=self.max_attempts,
                args=args.SerializeToString(),
                inserted_at=now,
                scheduled_at=now,
            )
            if created:
                self._event(job, job_pb2.JOB_EVENT_TYPE_ENQUEUED, now)
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
                job_pb2.JOB_STATE_EXECUTING, job.attempt + 1, now, worker
            )  # fmt: skip
            job.save()
            self._event(job, job_pb2.JOB_EVENT_TYPE_STARTED, now, worker=worker)
        return job

    def complete(self, job: JobRow) -> None:
        self._finish(job, job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_EVENT_TYPE_COMPLETED)

    def fail(self, job: JobRow, error: str, retry_in: float | None) -> None:
        """Records a failed attempt: retryable (retry_in seconds from now) or, with None,
        discarded for good."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            fresh = locked(JobRow.select().where(JobRow.id == job.id)).get()
            errors = json.loads(fresh.errors)
            errors.append({"attempt": fresh.attempt, "message": error, "failed_at": now})
            fresh.errors = json.dumps(errors)
            self._event(
                fresh, job_pb2.JOB_EVENT_TYPE_FAILED, now, message=error, worker=fresh.worker
            )
            if fresh.state == job_pb2.JOB_STATE_CANCELLED:
                pass  # cancelled while running: stays cancelled, is not retried
            elif retry_in is None:
                fresh.state, fresh.finished_at = job_pb2.JOB_STATE_DISCARDED, now
                self._event(fresh, job_pb2.JOB_EVENT_TYPE_DISCARDED, now, message=error)
            else:
                fresh.state, fresh.scheduled_at = job_pb2.JOB_STATE_RETRYABLE, now + retry_in
                self._event(
                    fresh,
                    job_pb2.JOB_EVENT_TYPE_RETRY_SCHEDULED,
                    now,
                    message=f"in {retry_in:.1f}s",
                )
            fresh.save()

    def discard(self, job_id: str, reason: str) -> JobRow | None:
        """Discards a job that the queue gave up on (see worker.Jobs.given_up); None when
        there is no such job or it had finished already."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job: JobRow | None = locked(JobRow.select().where(JobRow.id == job_id)).first()
            if job is None or job.state in FINAL_STATES:
                return None
            job.state, job.finished_at = job_pb2.JOB_STATE_DISCARDED, now
            job.save()
            self._event(job, job_pb2.JOB_EVENT_TYPE_DISCARDED, now, message=reason)
        return job

    def cancel(self, job_id: str, reason: str) -> JobRow:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state in FINAL_STATES:
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {job_pb2.JobState.Name(job.state)} and cannot be cancelled",
                )
            job.state, job.finished_at = job_pb2.JOB_STATE_CANCELLED, now
            job.save()
            self._event(job, job_pb2.JOB_EVENT_TYPE_CANCELLED, now, message=reason)
        return job

    def retry(self, job_id: str) -> JobRow:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state not in (job_pb2.JOB_STATE_DISCARDED, job_pb2.JOB_STATE_CANCELLED):
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {job_pb2.JobState.Name(job.state)}; only discarded or "
                    "cancelled jobs can be retried",
                )
            job.state, job.attempt, job.scheduled_at, job.finished_at = (
                job_pb2.JOB_STATE_AVAILABLE, 0, now, None
            )  # fmt: skip
            job.save()
            self._event(job, job_pb2.JOB_EVENT_TYPE_RETRIED, now)
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
                field = job_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()
                setattr(stats, field, getattr(stats, field) + count)
        return [by_queue[name] for name in sorted(by_queue)]

    def _get(self, job_id: str) -> JobRow:
        job: JobRow | None = locked(JobRow.select().where(JobRow.id == job_id)).first()
        return found(job, "job", job_id)

    def _finish(self, job: JobRow, state: int, event: int) -> None:
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            fresh = locked(JobRow.select().where(JobRow.id == job.id)).get()
            if fresh.state != job_pb2.JOB_STATE_CANCELLED:
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


def open_jobs(settings: config.Settings) -> JobStore:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, MODELS, service=NAME)
    return JobStore(database, max_attempts=settings.job_max_retries + 1)

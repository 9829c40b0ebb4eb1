"""job_svc's tables (jobs and their append-only history of events), the kinds of job (email,
conversion, and the report of either's outcome), and both as the contracts carry them.

A job's row is the one truth about it: its state, attempts, errors and retry horizon. A
message on the queue only wakes a worker for it: it carries the job id and the job's
`dispatch` number at the time it was sent, and only the message with the row's current
number may run the job (see store.JobStore.start)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import peewee
from google.protobuf.message import Message
from mcsv.v1 import job_pb2
from playhouse.migrate import SchemaMigrator

from internal.data import drop_column_index
from internal.services.common.times import timestamp

NAME = "job_svc"
FINAL_STATES = (
    job_pb2.JOB_STATE_COMPLETED,
    job_pb2.JOB_STATE_DISCARDED,
    job_pb2.JOB_STATE_CANCELLED,
)


ArgsT = TypeVar("ArgsT", bound=Message)


@dataclass(frozen=True)
class JobKind(Generic[ArgsT]):
    """One kind of job: where it is queued, which actor runs it, what its args are, and its
    priority in a worker (Dramatiq's: of the messages a worker holds, the lowest runs first)."""

    queue: str
    actor: str
    args_field: str  # the Job.args oneof member
    args_type: type[ArgsT]
    priority: int

    def parse_args(self, stored: bytes) -> ArgsT:
        """A job's args as stored in its row."""
        return self.args_type.FromString(bytes(stored))


EMAIL = JobKind("emails", "deliver_email", "email", job_pb2.EmailJobArgs, priority=10)
CONVERSION = JobKind(
    "conversions", "convert_image", "conversion", job_pb2.ConversionJobArgs, priority=10
)
# Tells user_svc how an email or conversion job ended (see outcomes.py). Before new work, so
# that a workflow whose work is done is not kept waiting for its report behind a backlog.
REPORT = JobKind("reports", "report_outcome", "report", job_pb2.ReportJobArgs, priority=0)
KINDS: dict[str, JobKind[Any]] = {kind.actor: kind for kind in (EMAIL, CONVERSION, REPORT)}


class JobRow(peewee.Model):
    id = peewee.TextField(primary_key=True)
    idempotency_key = peewee.TextField(unique=True)
    queue = peewee.TextField()  # indexed first in (queue, inserted_at) and (queue, state)
    actor = peewee.TextField()
    state = peewee.IntegerField()  # indexed first in (state, inserted_at)
    attempt = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=0)  # unused: retries end at retry_until
    args = peewee.BlobField()
    errors = peewee.TextField(default="[]")  # JSON: [{attempt, message, failed_at}]
    inserted_at = peewee.DoubleField(index=True)
    scheduled_at = peewee.DoubleField(null=True)
    attempted_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    worker = peewee.TextField(default="")
    # The end of the retry horizon (None: from before it, inserted_at + the horizon).
    retry_until = peewee.DoubleField(null=True)
    # The number of the one message that may run the job; bumped each time one is sent.
    dispatch = peewee.IntegerField(default=0)
    # Whether that message is known to be on the queue, or none is owed (a finished job);
    # a job owed one that is not known to be sent, dispatch.resend_unsent sends.
    sent = peewee.BooleanField(default=True)
    dispatched_at = peewee.DoubleField(null=True)
    # Not a column: the sequence of the event the transition that returned the row recorded
    # (JobStore.start's STARTED), 0 when unknown.
    version: int = 0

    class Meta:
        table_name = "jobs"
        indexes = (
            (("sent", "dispatched_at"), False),
            # ListJobs' newest-first pages filtered by state, queue or actor, and
            # GetQueueStats' counts per queue and state (read from the index alone).
            (("state", "inserted_at"), False),
            (("queue", "inserted_at"), False),
            (("actor", "inserted_at"), False),
            (("queue", "state"), False),
        )
        # save() writes only the fields a transition changed (a few, of nineteen).
        only_save_dirty = True


class JobEventRow(peewee.Model):
    job_id = peewee.TextField()  # indexed first in the unique (job_id, sequence)
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


def add_dispatch(migrator: SchemaMigrator) -> None:
    """Migration 1: the retry horizon and the dispatch numbers of each job's messages."""
    table = JobRow._meta.table_name
    migrator.add_column(table, "retry_until", peewee.DoubleField(null=True)).run()
    migrator.add_column(table, "dispatch", peewee.IntegerField(default=0)).run()
    migrator.add_column(table, "sent", peewee.BooleanField(default=True)).run()
    migrator.add_column(table, "dispatched_at", peewee.DoubleField(null=True)).run()
    migrator.add_index(table, ("sent", "dispatched_at")).run()


def index_listing(migrator: SchemaMigrator) -> None:
    """Migration 2: indexes for ListJobs' filtered pages and GetQueueStats' counts."""
    table = JobRow._meta.table_name
    for columns in (("state", "inserted_at"), ("queue", "inserted_at"),
                    ("actor", "inserted_at"), ("queue", "state")):  # fmt: skip
        migrator.add_index(table, columns).run()


def drop_prefix_indexes(migrator: SchemaMigrator) -> None:
    """Migration 3: the single-column indexes on jobs.queue, jobs.state and
    job_events.job_id go; the indexes that begin with those columns ((queue, inserted_at),
    (queue, state), (state, inserted_at), the unique (job_id, sequence)) serve every query
    they served, and each job's insert, transitions and events no longer update them."""
    for model, column in ((JobRow, "queue"), (JobRow, "state"), (JobEventRow, "job_id")):
        drop_column_index(migrator, model._meta.table_name, column)


MIGRATIONS = [add_dispatch, index_listing, drop_prefix_indexes]


def job_message(job: JobRow) -> job_pb2.Job:
    kind = KINDS[job.actor]
    message = job_pb2.Job(
        id=job.id,
        queue=job.queue,
        actor=job.actor,
        state=job_pb2.JobState.Name(job.state),
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker=job.worker,
        inserted_at=timestamp(job.inserted_at),
        scheduled_at=timestamp(job.scheduled_at),
        attempted_at=timestamp(job.attempted_at),
        finished_at=timestamp(job.finished_at),
        retry_until=timestamp(job.retry_until),
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
        type=job_pb2.JobEventType.Name(event.type),
        occurred_at=timestamp(event.occurred_at),
        attempt=event.attempt,
        message=event.message,
        worker=event.worker,
    )

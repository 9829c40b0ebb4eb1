"""user_svc's transactional outbox: the job requests it owes job_svc, as rows of its own
database. CreateUser and ConvertImage add the intent (the serialized EnqueueEmail or
EnqueueConversion request, keyed by its idempotency key) in the same transaction as the user
or the conversion, so that both exist or neither does; the relay (relay.py) sends it.

An intent's life:

  pending  --job_svc acknowledged-->      sent      (job_id kept; the row stays as a record)
  pending  --job_svc refused for good-->  rejected  (the relay reports the failure...)
  rejected --failure reported-->          failed    (...and the row stays, with its error)

A sent or failed row is kept OUTBOX_RETENTION_SECONDS after it finished (sent_at, or its
creation for a failed one), then user_svc's periodic sweep deletes it (prune).

Claims: whoever sends an intent holds its lease (leased_until) for the length of the send;
no one else takes a row whose lease runs, or whose retry is not due (next_attempt_at).
CreateUser and ConvertImage insert the row already leased to themselves, for their own
immediate send; the relay claims the rest in a write transaction (BEGIN IMMEDIATE on SQLite;
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL), so that several replicas of user_svc relay
from one database without sending a row twice at once. A row is sent twice only when its
lease ran out in the middle of a send (a process killed, a send slower than its lease): job_svc
is idempotent on the key, so that second send returns the same job."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence

import peewee

from internal.data import create_row, write_transaction

EMAIL = "email"  # request: EnqueueEmailRequest; subject: the user's id
CONVERSION = "conversion"  # request: EnqueueConversionRequest; subject: the conversion's id

PENDING = "pending"
SENT = "sent"
REJECTED = "rejected"
FAILED = "failed"
OPEN = (PENDING, REJECTED)  # what the relay still has to do something about


class OutboxRow(peewee.Model):
    key = peewee.TextField(primary_key=True)  # the job's idempotency key in job_svc
    kind = peewee.TextField()  # EMAIL or CONVERSION
    subject_id = peewee.TextField()
    request = peewee.BlobField()  # the serialized Enqueue*Request
    trace = peewee.TextField(default="{}")  # JSON: the W3C trace context of the request
    state = peewee.TextField(default=PENDING)
    attempts = peewee.IntegerField(default=0)  # sends that failed
    next_attempt_at = peewee.DoubleField(default=0.0)
    leased_until = peewee.DoubleField(default=0.0)
    job_id = peewee.TextField(default="")
    error = peewee.TextField(default="")  # the last failure
    created_at = peewee.DoubleField()
    sent_at = peewee.DoubleField(null=True)

    class Meta:
        table_name = "outbox"
        indexes = ((("state", "next_attempt_at"), False),)

    @property
    def trace_context(self) -> dict[str, str]:
        carrier: dict[str, str] = json.loads(self.trace or "{}")
        return carrier


def add(
    kind: str, key: str, subject_id: str, request: bytes, trace: dict[str, str], lease: float
) -> OutboxRow:
    """Records an intent, leased for `lease` seconds to the caller (who sends it at once).
    Call inside the transaction that writes its user or conversion."""
    now = time.time()
    return create_row(
        OutboxRow, key=key, kind=kind, subject_id=subject_id, request=request,
        trace=json.dumps(trace), created_at=now, leased_until=now + lease,
    )  # fmt: skip


def get(database: peewee.Database, key: str) -> OutboxRow | None:
    with database.connection_context():
        row: OutboxRow | None = OutboxRow.get_or_none(OutboxRow.key == key)
    return row


def _due(now: float) -> peewee.Expression:
    return (
        OutboxRow.state.in_(OPEN)
        & (OutboxRow.next_attempt_at <= now)
        & (OutboxRow.leased_until <= now)
    )


def any_due(database: peewee.Database) -> bool:
    """Whether some intent waits for a relay: a plain read, so that idle relays polling the
    database take no write lock."""
    with database.connection_context():
        return bool(OutboxRow.select(OutboxRow.key).where(_due(time.time())).limit(1).exists())


def claim(database: peewee.Database, limit: int, lease: float) -> list[OutboxRow]:
    """Up to `limit` intents that are due, oldest first, leased to the caller for `lease`
    seconds."""
    now = time.time()
    with database.connection_context(), write_transaction(database):
        query = OutboxRow.select().where(_due(now)).order_by(OutboxRow.created_at).limit(limit)
        if database.for_update:
            query = query.for_update(skip_locked=True)  # other relays take other rows
        rows = list(query)
        if rows:
            OutboxRow.update(leased_until=now + lease).where(
                OutboxRow.key.in_([row.key for row in rows])
            ).execute()
    return rows


def mark_sent(
    database: peewee.Database,
    sent: Sequence[tuple[OutboxRow, str]],
    also: Callable[[OutboxRow, str], None],
) -> None:
    """job_svc acknowledged these intents, each with its job, recorded in one transaction;
    `also(row, job_id)` runs in it for each (e.g. recording the job id on the conversion).
    A row another relay marked first stays as it is."""
    with database.connection_context(), write_transaction(database):
        for row, job_id in sent:
            cursor = database.execute_sql(  # type: ignore[no-untyped-call]
                _mark_sent_sql(database.param), (SENT, job_id, time.time(), row.key, PENDING)
            )
            if cursor.rowcount:
                also(row, job_id)


@functools.cache
def _mark_sent_sql(param: str) -> str:
    """Written once: peewee builds a query's SQL anew on each run (every welcome runs this)."""
    return (
        f'UPDATE "{OutboxRow._meta.table_name}" SET "state" = {param}, "job_id" = {param}, '
        f'"sent_at" = {param}, "leased_until" = 0.0 WHERE "key" = {param} AND "state" = {param}'
    )


def retry_later(database: peewee.Database, row: OutboxRow, error: str, delay: float) -> None:
    """A send (or a failure report) that failed for now: due again in `delay` seconds."""
    with database.connection_context(), write_transaction(database):
        OutboxRow.update(
            attempts=OutboxRow.attempts + 1,
            error=error,
            next_attempt_at=time.time() + delay,
            leased_until=0.0,
        ).where((OutboxRow.key == row.key) & (OutboxRow.state == row.state)).execute()


def reject(database: peewee.Database, row: OutboxRow, error: str) -> None:
    """job_svc refused the intent for good: its failure is to be reported."""
    with database.connection_context(), write_transaction(database):
        OutboxRow.update(state=REJECTED, error=error).where(
            (OutboxRow.key == row.key) & (OutboxRow.state == PENDING)
        ).execute()
    row.state, row.error = REJECTED, error


def mark_failed(database: peewee.Database, row: OutboxRow) -> None:
    """A rejected intent whose failure has been reported (or could not be, for good)."""
    with database.connection_context(), write_transaction(database):
        OutboxRow.update(state=FAILED, leased_until=0.0).where(
            (OutboxRow.key == row.key) & (OutboxRow.state == REJECTED)
        ).execute()


def prune(database: peewee.Database, before: float, limit: int = 1000) -> int:
    """Deletes up to `limit` intents finished (sent, or failed and reported) before `before`,
    the oldest first; their count. Pending and rejected ones stay, however old."""
    finished_at = peewee.fn.COALESCE(OutboxRow.sent_at, OutboxRow.created_at)
    with database.connection_context(), write_transaction(database):
        oldest = (
            OutboxRow.select(OutboxRow.key)
            .where(OutboxRow.state.in_((SENT, FAILED)) & (finished_at < before))
            .order_by(finished_at)
            .limit(limit)
        )
        deleted: int = OutboxRow.delete().where(OutboxRow.key.in_(oldest)).execute()
    return deleted


def release(database: peewee.Database, rows: Sequence[OutboxRow]) -> None:
    """Gives back leases not used (a relay backing off before it sent them)."""
    if not rows:
        return
    with database.connection_context(), write_transaction(database):
        OutboxRow.update(leased_until=0.0).where(
            OutboxRow.key.in_([row.key for row in rows]) & OutboxRow.state.in_(OPEN)
        ).execute()

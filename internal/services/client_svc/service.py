"""client_svc: receives the final callback of every workflow and keeps the latest of it, once
per notification id (a higher version of the event replaces a lower one), numbered in the
order received; ListNotifications reads them back. Its CLI
(internal/services/client_svc/cli.py) drives the workflows and polls that RPC."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass

import peewee
from mcsv.twirp import Context
from mcsv.v1 import client_pb2
from playhouse.migrate import SchemaMigrator

from internal import config
from internal.data import (
    create_tables,
    drop_column_index,
    fetch_rows,
    open_database,
    write_transaction,
)
from internal.services.common.errors import (
    invalid_argument,
    optional_url,
    require,
    require_outcome,
    require_valid_times,
)
from internal.services.common.paging import page_position, page_size, position_token
from internal.services.common.times import timestamp

NAME = "client_svc"


class Notification(peewee.Model):
    notification_id = peewee.TextField(primary_key=True)
    # "email" (workflow 1, subject = user id) or "conversion" (workflow 2, subject = its id)
    kind = peewee.TextField()
    subject_id = peewee.TextField()  # not indexed: no query looks a subject up
    received_at = peewee.DoubleField()  # unix time
    payload = peewee.BlobField()  # the ReceiveNotificationRequest
    # 1, 2, 3... in the order received, and committed in that order (see store_notification):
    # a replaced notification takes the next one. Unique, and with kind: both
    # ListNotifications queries are index range scans.
    sequence = peewee.BigIntegerField(unique=True)
    # The event's version (EmailDelivery/ConversionReport.version): only a higher one
    # replaces the notification.
    version = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((("kind", "sequence"), False),)


# The stored kinds and the contract's.
KINDS = {
    "email": client_pb2.NOTIFICATION_KIND_EMAIL_DELIVERED,
    "conversion": client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED,
}
KIND_NAMES = {number: name for name, number in KINDS.items()}


# The longest a ListNotifications call waits for a notification (its wait_ms is clamped).
MAX_WAIT_MS = 30_000
# A waiting call looks again this often, for notifications stored by another replica (this
# process's own wake it at once).
RECHECK_SECONDS = 0.5


class Arrivals:
    """Wakes the waiting ListNotifications calls when this process stores a notification.
    A call takes a ticket before it looks, then waits on it: a notification stored between
    the look and the wait has rung the ticket already."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def ticket(self) -> asyncio.Event:
        """The event the next notification sets (in the event loop's thread)."""
        if self._event is None or self._event.is_set():
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        return self._event

    def ring(self) -> None:
        """A notification was stored (from any thread)."""
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not event.is_set():
            loop.call_soon_threadsafe(event.set)


class ClientService:
    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        self.arrivals = Arrivals()

    def receive_notification(
        self, ctx: Context, request: client_pb2.ReceiveNotificationRequest
    ) -> client_pb2.ReceiveNotificationResponse:
        notification_id = require(request.notification_id, "notification_id")
        event = request.WhichOneof("event")
        if event == "email_delivered":
            kind, version = "email", request.email_delivered.version
            subject = require(request.email_delivered.user_id, "email_delivered.user_id")
            require_outcome(request.email_delivered.outcome, "email_delivered.outcome")
        elif event == "conversion_finished":
            kind, version = "conversion", request.conversion_finished.version
            report = request.conversion_finished
            subject = require(report.conversion_id, "conversion_finished.conversion_id")
            require_outcome(report.outcome, "conversion_finished.outcome")
            optional_url(report.pdf_url, "conversion_finished.pdf_url")
        else:
            raise invalid_argument("event", "email_delivered or conversion_finished is required")
        if version < 0:
            raise invalid_argument(f"{event}.version", "must not be negative")
        # Stored and served back by ListNotifications: a time that cannot be written as JSON
        # would fail every later listing.
        require_valid_times(request)
        first, stored = store_notification(
            self.database,
            notification_id=notification_id,
            kind=kind,
            subject_id=subject,
            received_at=time.time(),
            payload=request.SerializeToString(),
            version=version,
        )
        if stored:
            self.arrivals.ring()
        return client_pb2.ReceiveNotificationResponse(first_delivery=first, stored=stored)

    async def list_notifications(
        self, ctx: Context, request: client_pb2.ListNotificationsRequest
    ) -> client_pb2.ListNotificationsResponse:
        if request.since_sequence < 0:
            raise invalid_argument("since_sequence", "must not be negative")
        if request.kind and request.kind not in KIND_NAMES:
            raise invalid_argument("kind", f"{request.kind} is not a NotificationKind")
        if request.wait_ms < 0:
            raise invalid_argument("wait_ms", "must not be negative")
        deadline = time.monotonic() + min(request.wait_ms, MAX_WAIT_MS) / 1000
        while True:
            ticket = self.arrivals.ticket()
            answer = await asyncio.to_thread(self._notifications, request)
            left = deadline - time.monotonic()
            if answer.notifications or left <= 0:
                return answer
            # Then look again, woken or not: another replica may have stored one.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ticket.wait(), min(left, RECHECK_SECONDS))

    def _notifications(
        self, request: client_pb2.ListNotificationsRequest
    ) -> client_pb2.ListNotificationsResponse:
        size = page_size(request.page_size)
        after = max(request.since_sequence, page_position(request.page_token))
        sql = _statements(self.database)
        with self.database.connection_context():
            if request.kind:
                params: tuple[object, ...] = (after, KIND_NAMES[request.kind], size + 1)
                rows = fetch_rows(Notification, sql.page_of_kind, params)
            else:
                rows = fetch_rows(Notification, sql.page, (after, size + 1))
            # After the page: at least as new as anything on it.
            (latest,) = self.database.execute_sql(sql.last).fetchone()  # type: ignore[no-untyped-call]
        latest = latest or 0
        more = len(rows) > size
        rows = rows[:size]
        return client_pb2.ListNotificationsResponse(
            notifications=[notification_message(row) for row in rows],
            next_page_token=position_token(rows[-1].sequence if rows else after, more),
            latest_sequence=latest,
        )


def store_notification(
    database: peewee.Database, *, notification_id: str, version: int, **values: object
) -> tuple[bool, bool]:
    """Stores a notification with the next sequence, or replaces the one stored under its id
    when its version is higher (it then takes the next sequence, so pollers see it again).
    Returns (first delivery of this id, stored). Numbering happens under a write lock held
    until commit (SQLite's write transaction, PostgreSQL's EXCLUSIVE table lock, which
    readers pass), so sequences become visible in order: a poller that has seen sequence n
    never finds a smaller one appear later."""
    with database.connection_context(), write_transaction(database):
        if isinstance(database, peewee.PostgresqlDatabase):
            table = Notification._meta.table_name
            database.execute_sql(  # type: ignore[no-untyped-call]
                f'LOCK TABLE "{table}" IN EXCLUSIVE MODE'
            )
        # The statements every notification runs, as SQL written once (peewee would build it
        # anew each time, at several times the cost of running it).
        sql = _statements(database)
        found = database.execute_sql(sql.version, (notification_id,)).fetchone()  # type: ignore[no-untyped-call]
        stored_version = None if found is None else found[0]
        if stored_version is not None and version <= stored_version:
            return False, False  # a repeat, or older than what is kept
        (last,) = database.execute_sql(sql.last).fetchone()  # type: ignore[no-untyped-call]
        fields = {**values, "version": version, "sequence": (last or 0) + 1}
        if stored_version is None:
            database.execute_sql(  # type: ignore[no-untyped-call]
                sql.insert, [notification_id, *(fields[column] for column in INSERTED[1:])]
            )
        else:
            Notification.update(**fields).where(
                Notification.notification_id == notification_id
            ).execute()
        return stored_version is None, True


# The columns store_notification inserts, in order.
INSERTED = ("notification_id", "kind", "subject_id", "received_at", "payload", "sequence",
            "version")  # fmt: skip


@dataclass(frozen=True)
class _Statements:
    version: str  # the stored version of a notification id
    last: str  # the highest sequence
    insert: str  # a new notification, INSERTED's columns
    page: str  # the notifications after a sequence, in order, up to a limit
    page_of_kind: str  # the same, of one kind


@functools.cache
def _statements(database: peewee.Database) -> _Statements:
    table, param = Notification._meta.table_name, database.param
    columns = ", ".join(f'"{column}"' for column in INSERTED)
    after = f'SELECT {columns} FROM "{table}" WHERE "sequence" > {param}'
    in_order = f'ORDER BY "sequence" LIMIT {param}'
    return _Statements(
        version=f'SELECT "version" FROM "{table}" WHERE "notification_id" = {param}',
        last=f'SELECT MAX("sequence") FROM "{table}"',
        insert=f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join(param for _ in INSERTED)})',
        page=f"{after} {in_order}",
        page_of_kind=f'{after} AND "kind" = {param} {in_order}',
    )


def notification_message(row: Notification) -> client_pb2.Notification:
    sent = client_pb2.ReceiveNotificationRequest.FromString(bytes(row.payload))
    message = client_pb2.Notification(
        sequence=row.sequence,
        notification_id=row.notification_id,
        kind=KINDS[row.kind],
        subject_id=row.subject_id,
        received_at=timestamp(row.received_at),
        sent_at=sent.sent_at if sent.HasField("sent_at") else None,
    )
    if sent.HasField("email_delivered"):
        message.email_delivered.CopyFrom(sent.email_delivered)
    elif sent.HasField("conversion_finished"):
        message.conversion_finished.CopyFrom(sent.conversion_finished)
    return message


def number_notifications(migrator: SchemaMigrator) -> None:
    """Migration 1: sequences for a database from before ListNotifications, in the order the
    notifications were received, then the column's NOT NULL and indexes."""
    table = Notification._meta.table_name
    migrator.add_column(table, "sequence", peewee.BigIntegerField(null=True)).run()
    received = Notification.select(Notification.notification_id).order_by(
        Notification.received_at, Notification.notification_id
    )
    for number, row in enumerate(list(received), start=1):
        Notification.update(sequence=number).where(
            Notification.notification_id == row.notification_id
        ).execute()
    migrator.add_not_null(table, "sequence").run()
    migrator.add_index(table, ("sequence",), unique=True).run()
    migrator.add_index(table, ("kind", "sequence")).run()


def add_versions(migrator: SchemaMigrator) -> None:
    """Migration 2: the event version of each notification (0: from before versions)."""
    table = Notification._meta.table_name
    migrator.add_column(table, "version", peewee.BigIntegerField(default=0)).run()


def drop_subject_index(migrator: SchemaMigrator) -> None:
    """Migration 3: the index on subject_id goes. No query reads by it, and each
    notification's insert paid for it."""
    drop_column_index(migrator, Notification._meta.table_name, "subject_id")


MIGRATIONS = [number_notifications, add_versions, drop_subject_index]


def open_notifications(settings: config.Settings) -> peewee.Database:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, [Notification], service=NAME, migrations=MIGRATIONS)
    return database

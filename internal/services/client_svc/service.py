"""client_svc: receives the final callback of every workflow and keeps it, once per
notification id, numbered in the order received; ListNotifications reads them back. Its CLI
(internal/services/client_svc/cli.py) drives the workflows and polls that RPC."""

from __future__ import annotations

import time

import peewee
from mcsv.twirp import Context
from mcsv.v1 import client_pb2
from playhouse.migrate import SchemaMigrator

from internal import config
from internal.data import create_tables, open_database, write_transaction
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
    subject_id = peewee.TextField(index=True)
    received_at = peewee.DoubleField()  # unix time
    payload = peewee.BlobField()  # the ReceiveNotificationRequest
    # 1, 2, 3... in the order received, and committed in that order (see insert_notification).
    # Unique, and with kind: both ListNotifications queries are index range scans.
    sequence = peewee.BigIntegerField(unique=True)

    class Meta:
        indexes = ((("kind", "sequence"), False),)


# The stored kinds and the contract's.
KINDS = {
    "email": client_pb2.NOTIFICATION_KIND_EMAIL_DELIVERED,
    "conversion": client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED,
}
KIND_NAMES = {number: name for name, number in KINDS.items()}


class ClientService:
    def __init__(self, database: peewee.Database) -> None:
        self.database = database

    def receive_notification(
        self, ctx: Context, request: client_pb2.ReceiveNotificationRequest
    ) -> client_pb2.ReceiveNotificationResponse:
        notification_id = require(request.notification_id, "notification_id")
        event = request.WhichOneof("event")
        if event == "email_delivered":
            kind = "email"
            subject = require(request.email_delivered.user_id, "email_delivered.user_id")
            require_outcome(request.email_delivered.outcome, "email_delivered.outcome")
        elif event == "conversion_finished":
            kind = "conversion"
            report = request.conversion_finished
            subject = require(report.conversion_id, "conversion_finished.conversion_id")
            require_outcome(report.outcome, "conversion_finished.outcome")
            optional_url(report.pdf_url, "conversion_finished.pdf_url")
        else:
            raise invalid_argument("event", "email_delivered or conversion_finished is required")
        # Stored and served back by ListNotifications: a time that cannot be written as JSON
        # would fail every later listing.
        require_valid_times(request)
        inserted = insert_notification(
            self.database,
            notification_id=notification_id,
            kind=kind,
            subject_id=subject,
            received_at=time.time(),
            payload=request.SerializeToString(),
        )
        return client_pb2.ReceiveNotificationResponse(first_delivery=inserted)

    def list_notifications(
        self, ctx: Context, request: client_pb2.ListNotificationsRequest
    ) -> client_pb2.ListNotificationsResponse:
        if request.since_sequence < 0:
            raise invalid_argument("since_sequence", "must not be negative")
        if request.kind and request.kind not in KIND_NAMES:
            raise invalid_argument("kind", f"{request.kind} is not a NotificationKind")
        size = page_size(request.page_size)
        after = max(request.since_sequence, page_position(request.page_token))
        query = Notification.select().where(Notification.sequence > after)
        if request.kind:
            query = query.where(Notification.kind == KIND_NAMES[request.kind])
        with self.database.connection_context():
            rows = list(query.order_by(Notification.sequence).limit(size + 1))
            # After the page: at least as new as anything on it.
            latest = Notification.select(peewee.fn.MAX(Notification.sequence)).scalar() or 0
        more = len(rows) > size
        rows = rows[:size]
        return client_pb2.ListNotificationsResponse(
            notifications=[notification_message(row) for row in rows],
            next_page_token=position_token(rows[-1].sequence if rows else after, more),
            latest_sequence=latest,
        )


def insert_notification(database: peewee.Database, **values: object) -> bool:
    """Stores a notification with the next sequence; False when its id is stored already.
    Numbering happens under a write lock held until commit (SQLite's write transaction,
    PostgreSQL's EXCLUSIVE table lock, which readers pass), so sequences become visible in
    order: a poller that has seen sequence n never finds a smaller one appear later."""
    with database.connection_context(), write_transaction(database):
        if isinstance(database, peewee.PostgresqlDatabase):
            table = Notification._meta.table_name
            database.execute_sql(  # type: ignore[no-untyped-call]
                f'LOCK TABLE "{table}" IN EXCLUSIVE MODE'
            )
        if Notification.get_or_none(Notification.notification_id == values["notification_id"]):
            return False
        last = Notification.select(peewee.fn.MAX(Notification.sequence)).scalar()
        Notification.insert(sequence=(last or 0) + 1, **values).execute()
        return True


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


def open_notifications(settings: config.Settings) -> peewee.Database:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, [Notification], service=NAME, migrations=[number_notifications])
    return database

"""client_svc: receives the final callback of every workflow and keeps it, once per
notification id. Its CLI (internal/services/client_svc/cli.py) drives the workflows and reads
these notifications back."""

from __future__ import annotations

import time
from dataclasses import dataclass

import peewee
from mcsv.twirp import Context
from mcsv.v1 import client_pb2

from internal import config
from internal.data import create_tables, open_database
from internal.services.common.errors import invalid_argument, require

NAME = "client_svc"


class Notification(peewee.Model):
    notification_id = peewee.TextField(primary_key=True)
    # "email" (workflow 1, subject = user id) or "conversion" (workflow 2, subject = its id)
    kind = peewee.TextField()
    subject_id = peewee.TextField(index=True)
    received_at = peewee.DoubleField()  # unix time
    payload = peewee.BlobField()  # the ReceiveNotificationRequest


@dataclass(frozen=True)
class Received:
    kind: str
    subject_id: str
    received_at: float
    request: client_pb2.ReceiveNotificationRequest


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
        elif event == "conversion_finished":
            kind = "conversion"
            subject = require(
                request.conversion_finished.conversion_id, "conversion_finished.conversion_id"
            )
        else:
            raise invalid_argument("event", "email_delivered or conversion_finished is required")
        with self.database.connection_context():
            inserted = (
                Notification.insert(
                    notification_id=notification_id,
                    kind=kind,
                    subject_id=subject,
                    received_at=time.time(),
                    payload=request.SerializeToString(),
                )
                .on_conflict_ignore()
                .execute()
            )
        return client_pb2.ReceiveNotificationResponse(first_delivery=bool(inserted))


def open_notifications(settings: config.Settings) -> peewee.Database:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, [Notification], service=NAME)
    return database


def received_since(database: peewee.Database, since: float) -> list[Received]:
    """The notifications received at or after a time, oldest first."""
    with database.connection_context():
        query = (
            Notification.select()
            .where(Notification.received_at >= since)
            .order_by(Notification.received_at)
        )
        return [
            Received(
                row.kind,
                row.subject_id,
                row.received_at,
                client_pb2.ReceiveNotificationRequest.FromString(bytes(row.payload)),
            )
            for row in query
        ]

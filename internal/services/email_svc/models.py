"""email_svc's table: every email, rendered, once per idempotency key; and an email as the
contracts carry it."""

from __future__ import annotations

import peewee
from mcsv.v1 import common_pb2, email_pb2

from internal.services.common.times import timestamp

NAME = "email_svc"


class EmailRow(peewee.Model):
    id = peewee.TextField(primary_key=True)
    idempotency_key = peewee.TextField(unique=True)
    user_id = peewee.TextField(index=True)
    recipient = peewee.TextField(index=True)
    template = peewee.IntegerField()
    subject = peewee.TextField()
    text_body = peewee.TextField()
    html_body = peewee.TextField()
    backend = peewee.IntegerField()
    delivered_at = peewee.DoubleField(null=True, index=True)  # None: sending over SMTP

    class Meta:
        table_name = "emails"


def email_message(row: EmailRow) -> email_pb2.Email:
    return email_pb2.Email(
        id=row.id,
        idempotency_key=row.idempotency_key,
        user_id=row.user_id,
        recipient=row.recipient,
        template=common_pb2.EmailTemplate.Name(row.template),
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        backend=email_pb2.DeliveryBackend.Name(row.backend),
        delivered_at=timestamp(row.delivered_at),
    )

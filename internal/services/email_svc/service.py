"""email_svc's RPCs: renders templated emails and delivers them, once per idempotency key, to
the local mailbox (the emails table, readable at /mailbox) or over SMTP."""

from __future__ import annotations

import time
import uuid

import peewee
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import common_pb2, email_pb2

from internal import mail, observability
from internal.data import insert_once, save_row, write_transaction
from internal.observability import metrics
from internal.services.common.errors import found, invalid_argument, require, require_email
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.email_svc.models import EmailRow, email_message


class EmailService:
    def __init__(
        self,
        database: peewee.Database,
        transport: mail.SmtpTransport | None,
        sender: str,
    ) -> None:
        self.database = database
        self.transport = transport  # None: the mailbox
        self.sender = sender

    def deliver_email(
        self, ctx: Context, request: email_pb2.DeliverEmailRequest
    ) -> email_pb2.DeliverEmailResponse:
        """A plain method: the Twirp runtime runs it in its thread pool, where the database
        and SMTP calls may block."""
        key = require(request.idempotency_key, "idempotency_key", max_length=200)
        recipient = require_email(request.recipient, "recipient")
        if request.template == common_pb2.EMAIL_TEMPLATE_UNSPECIFIED:
            raise invalid_argument("template", "is required")
        observability.tag(user_id=request.user_id)
        variables = {"user_name": request.user_name, "recipient": recipient, **request.variables}
        template = common_pb2.EmailTemplate.Name(request.template).removeprefix("EMAIL_TEMPLATE_")
        backend = "mailbox" if self.transport is None else "smtp"
        started = time.perf_counter()
        outcome = "failed"
        try:
            with observability.current_span(
                "render email", attributes={"mcsv.email.template": template.lower()}
            ):
                try:
                    rendered = mail.render(request.template, variables)
                except mail.TemplateError as exc:
                    raise invalid_argument("variables", str(exc)) from exc
            with observability.current_span(
                "deliver email", attributes={"mcsv.email.backend": backend}
            ):  # to the mailbox, that is storing it; over SMTP, storing then sending
                row, delivered_before = self._claim(key, request, rendered)
                observability.tag(email_id=row.id)
                if not delivered_before and row.delivered_at is None:
                    self._send(row)
            outcome = "duplicate" if delivered_before else "delivered"
        finally:
            labels = (template.lower(), backend, outcome)
            metrics.child(metrics.EMAILS, *labels).inc()
            metrics.child(metrics.EMAIL_DELIVERY_DURATION, *labels).observe(
                time.perf_counter() - started
            )
        return email_pb2.DeliverEmailResponse(
            email=email_message(row), already_delivered=delivered_before
        )

    def _claim(
        self, key: str, request: email_pb2.DeliverEmailRequest, rendered: mail.RenderedEmail
    ) -> tuple[EmailRow, bool]:
        """The row for this key, created if new; True when it was delivered before."""
        with self.database.connection_context(), write_transaction(self.database):
            row, created = insert_once(
                EmailRow,
                EmailRow.idempotency_key,
                id=uuid.uuid4().hex,
                idempotency_key=key,
                user_id=request.user_id,
                recipient=request.recipient.strip(),
                template=request.template,
                subject=rendered.subject,
                text_body=rendered.text,
                html_body=rendered.html,
                backend=(
                    email_pb2.DELIVERY_BACKEND_MAILBOX
                    if self.transport is None
                    else email_pb2.DELIVERY_BACKEND_SMTP
                ),
                delivered_at=time.time() if self.transport is None else None,
            )
        return row, not created and row.delivered_at is not None

    def _send(self, row: EmailRow) -> None:
        """Hands an email to the SMTP server, then marks it delivered. A crash in between
        sends it again on the next attempt (at least once, same Message-ID)."""
        assert self.transport is not None
        outgoing = mail.OutgoingEmail(
            sender=self.sender,
            recipient=row.recipient,
            subject=row.subject,
            text=row.text_body,
            html=row.html_body,
            message_id=f"{row.id}",
        )
        try:
            self.transport.send(outgoing)
        except mail.DeliveryError as exc:
            code = ErrorCode.UNAVAILABLE if exc.transient else ErrorCode.FAILED_PRECONDITION
            raise TwirpError(code, f"SMTP delivery to {row.recipient} failed: {exc}") from exc
        row.delivered_at = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            save_row(row)

    def list_emails(
        self, ctx: Context, request: email_pb2.ListEmailsRequest
    ) -> email_pb2.ListEmailsResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        rows, more = self.page(request.recipient, request.user_id, size, offset)
        emails = []
        for row in rows:
            email = email_message(row)
            email.text_body = email.html_body = ""  # listings leave the bodies out
            emails.append(email)
        return email_pb2.ListEmailsResponse(
            emails=emails, next_page_token=next_page_token(offset, size, more)
        )

    def page(
        self, recipient: str, user_id: str, limit: int, offset: int
    ) -> tuple[list[EmailRow], bool]:
        query = EmailRow.select().order_by(EmailRow.delivered_at.desc(), EmailRow.id)
        if recipient:
            query = query.where(EmailRow.recipient == recipient)
        if user_id:
            query = query.where(EmailRow.user_id == user_id)
        with self.database.connection_context():
            rows = list(query.offset(offset).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    def get_email(
        self, ctx: Context, request: email_pb2.GetEmailRequest
    ) -> email_pb2.GetEmailResponse:
        return email_pb2.GetEmailResponse(email=email_message(self.get(require(request.id, "id"))))

    def get(self, email_id: str) -> EmailRow:
        with self.database.connection_context():
            return found(EmailRow.get_or_none(EmailRow.id == email_id), "email", email_id)

"""email_svc: renders templated emails and delivers them, once per idempotency key, to the
local mailbox (the emails table, readable at /mailbox) or over SMTP."""

from __future__ import annotations

import asyncio
import html
import time
import uuid
from collections.abc import Sequence

import peewee
from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import common_pb2, email_pb2
from mcsv.v1.email_twirp_server import EmailServiceServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from internal import config, mail, observability
from internal.data import create_tables, insert_once, open_database, write_transaction
from internal.observability import metrics
from internal.services.common.app import service_app
from internal.services.common.errors import found, invalid_argument, require, require_email
from internal.services.common.paging import next_page_token, page_offset, page_size
from internal.services.common.times import timestamp

NAME = "email_svc"
MAILBOX = email_pb2.DELIVERY_BACKEND_MAILBOX
SMTP = email_pb2.DELIVERY_BACKEND_SMTP


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

    async def deliver_email(
        self, ctx: Context, request: email_pb2.DeliverEmailRequest
    ) -> email_pb2.DeliverEmailResponse:
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
            with observability.tracer().start_as_current_span(
                "render email", attributes={"mcsv.email.template": template.lower()}
            ):
                try:
                    rendered = mail.render(request.template, variables)
                except mail.TemplateError as exc:
                    raise invalid_argument("variables", str(exc)) from exc
            with observability.tracer().start_as_current_span(
                "deliver email", attributes={"mcsv.email.backend": backend}
            ):  # to the mailbox, that is storing it; over SMTP, storing then sending
                row, delivered_before = self._claim(key, request, rendered)
                observability.tag(email_id=row.id)
                if not delivered_before and row.delivered_at is None:
                    await self._send(row)
            outcome = "duplicate" if delivered_before else "delivered"
        finally:
            labels = (template.lower(), backend, outcome)
            metrics.EMAILS.labels(*labels).inc()
            metrics.EMAIL_DELIVERY_DURATION.labels(*labels).observe(time.perf_counter() - started)
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
                backend=MAILBOX if self.transport is None else SMTP,
                delivered_at=time.time() if self.transport is None else None,
            )
        return row, not created and row.delivered_at is not None

    async def _send(self, row: EmailRow) -> None:
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
            await asyncio.to_thread(self.transport.send, outgoing)
        except mail.DeliveryError as exc:
            code = ErrorCode.UNAVAILABLE if exc.transient else ErrorCode.FAILED_PRECONDITION
            raise TwirpError(code, f"SMTP delivery to {row.recipient} failed: {exc}") from exc
        row.delivered_at = time.time()
        with self.database.connection_context():
            row.save()

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


def mailbox_routes(service: EmailService) -> Sequence[BaseRoute]:
    """The mailbox as web pages: /mailbox lists the newest emails, /mailbox/<id> shows one."""

    async def inbox(request: Request) -> Response:
        rows, _ = service.page(request.query_params.get("recipient", ""), "", 200, 0)
        items = "\n".join(
            f"<tr><td>{_when(row)}</td><td>{html.escape(row.recipient)}</td>"
            f'<td><a href="/mailbox/{row.id}">{html.escape(row.subject)}</a></td></tr>'
            for row in rows
        )
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>mcsv mailbox</title>"
            "<body style='font-family:sans-serif'><h1>Mailbox</h1>"
            f"<p>{len(rows)} newest emails</p><table cellpadding=4>"
            f"<tr><th>Delivered</th><th>To</th><th>Subject</th></tr>{items}</table>"
        )

    async def show(request: Request) -> Response:
        email_id = request.path_params["email_id"]
        try:
            row = service.get(email_id.removesuffix(".txt"))
        except TwirpError:
            return PlainTextResponse(f"no email {email_id}", status_code=404)
        if email_id.endswith(".txt"):
            return PlainTextResponse(
                f"Subject: {row.subject}\nTo: {row.recipient}\n\n{row.text_body}"
            )
        return HTMLResponse(row.html_body)

    return [Route("/mailbox", inbox), Route("/mailbox/{email_id}", show)]


def _when(row: EmailRow) -> str:
    if row.delivered_at is None:
        return "sending"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.delivered_at))


def transport_from_settings(settings: config.Settings) -> mail.SmtpTransport | None:
    if settings.mail_url in ("mailbox:", "mailbox"):
        return None
    try:
        return mail.smtp_transport_from_url(settings.mail_url)
    except ValueError as exc:
        raise config.ConfigError(f"MAIL_URL: {exc}") from exc


def create_app(settings: config.Settings) -> Starlette:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, [EmailRow], service=NAME)
    service = EmailService(database, transport_from_settings(settings), settings.mail_from)

    async def database_ready() -> str | None:
        with database.connection_context():
            EmailRow.select().limit(1).execute()
        return None

    return service_app(
        NAME,
        [EmailServiceServer(service=service)],
        ready_checks={"database": database_ready},
        routes=mailbox_routes(service),
    )

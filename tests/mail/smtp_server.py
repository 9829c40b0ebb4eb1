"""A real SMTP server (aiosmtpd) on a loopback port that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.servers import free_port

# Recipients the server turns away, and how.
UNKNOWN_USER = "unknown@example.com"  # 550: permanent
BUSY_MAILBOX = "busy@example.com"  # 450: try again later

USERNAME = "mailer"
PASSWORD = "s3cret p@ss"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    # The user name the client logged in as, if it did.
    login: str | None
    # Whether the SMTP session was encrypted (STARTTLS or smtps).
    encrypted: bool


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address == UNKNOWN_USER:
            return "550 5.1.1 No such user here"
        if address == BUSY_MAILBOX:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                login=session.auth_data if isinstance(session.auth_data, str) else None,
                encrypted=server.transport is not None
                and server.transport.get_extra_info("cipher") is not None,
            )
        )
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class SmtpServer:
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    login, password = auth_data.login.decode(), auth_data.password.decode()
    if (login, password) != (USERNAME, PASSWORD):
        return AuthResult(success=False, handled=False)
    return AuthResult(success=True, auth_data=login)


@contextmanager
def smtp_server(
    *,
    require_auth: bool = False,
    starttls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
) -> Iterator[SmtpServer]:
    """Serves SMTP on 127.0.0.1 until the block ends.

    require_auth: AUTH PLAIN/LOGIN with USERNAME/PASSWORD before MAIL (allowed without TLS
    unless starttls_context is given). starttls_context: offers STARTTLS and requires it.
    implicit_tls_context: speaks TLS from the first byte (smtps)."""
    handler = RecordingHandler()
    options: dict[str, Any] = {}
    if require_auth:
        options.update(
            authenticator=check_password,
            auth_required=True,
            auth_require_tls=starttls_context is not None,
        )
    if starttls_context is not None:
        options.update(tls_context=starttls_context, require_starttls=True)
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ssl_context=implicit_tls_context, **options
    )
    controller.start()
    try:
        yield SmtpServer(port=port, handler=handler)
    finally:
        controller.stop()

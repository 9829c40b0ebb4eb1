"""Delivering an email to an SMTP server with smtplib: plain, STARTTLS or implicit TLS
(smtps), with AUTH when a user name is configured. One connection per email."""

from __future__ import annotations

import functools
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_SMTP_PORT = 25
DEFAULT_SUBMISSION_PORT = 587  # smtp:// with STARTTLS
DEFAULT_SMTPS_PORT = 465

# The id inside Message-ID's angle brackets: printable ASCII without spaces or brackets.
_MESSAGE_ID = re.compile(r"[!-;=?-~]+")


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str  # "Name <address>" or a bare address
    recipient: str
    subject: str
    text: str
    html: str
    # The idempotency handle, sent as the Message-ID header so that a resend is recognisable.
    # "<id@domain>" is sent as is; a bare id gets the sender's domain: "<id@sender.domain>".
    message_id: str

    def __post_init__(self) -> None:
        for name in ("sender", "recipient", "subject", "message_id"):
            value = getattr(self, name)
            if "\r" in value or "\n" in value:
                raise ValueError(f"{name} must be a single line, got {value!r}")
        for name in ("sender", "recipient"):
            value = getattr(self, name)
            if "@" not in parseaddr(value)[1]:
                raise ValueError(f"{name}={value!r} is not an email address")
        if not _MESSAGE_ID.fullmatch(self.message_id.removeprefix("<").removesuffix(">")):
            raise ValueError(
                f"message_id={self.message_id!r} must be printable ASCII without spaces or <>"
            )


class DeliveryError(Exception):
    """The SMTP server did not take the email. `transient` says whether trying again later
    can help (connection failures, timeouts, 4xx replies) or not (5xx replies, a server
    that lacks STARTTLS or AUTH, a certificate that does not verify)."""

    def __init__(self, message: str, *, transient: bool, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.smtp_code = smtp_code


def build_message(email: OutgoingEmail) -> EmailMessage:
    """The MIME message for an email: multipart/alternative with the text and HTML parts."""
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = _message_id_header(email.message_id, email.sender)
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


class SmtpTransport:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`starttls` upgrades a plain connection; `use_tls` speaks TLS from the start
        (smtps). Certificates are verified against the system's CAs unless `ssl_context`
        says otherwise."""
        if not host:
            raise ValueError("the SMTP host is empty")
        if not 0 < port < 65536:
            raise ValueError(f"SMTP port {port} is not between 1 and 65535")
        if starttls and use_tls:
            raise ValueError("starttls and use_tls exclude each other: smtps is TLS already")
        if (username is None) != (password is None):
            raise ValueError("an SMTP username needs a password and a password a username")
        if timeout <= 0:
            raise ValueError(f"SMTP timeout {timeout} must be positive")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        security = "smtps" if self.use_tls else "starttls" if self.starttls else "plain"
        user = f" as {self.username!r}" if self.username is not None else ""
        return f"<SmtpTransport {self.host}:{self.port} {security}{user}>"

    def send(self, email: OutgoingEmail) -> None:
        """Delivers the email or raises DeliveryError. Blocks for up to a few timeouts."""
        message = build_message(email)
        where = f"SMTP server {self.host}:{self.port}"
        try:
            smtp = self._connect()
            try:
                if self.starttls:
                    smtp.starttls(context=self._tls_context())
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                smtp.send_message(message)
            finally:
                _close(smtp)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            replies = "; ".join(
                f"{code} {_text(reply)}" for code, reply in error.recipients.values()
            )
            raise DeliveryError(
                f"{where} refused recipient {email.recipient}: {replies}",
                transient=all(400 <= code < 500 for code in codes),
                smtp_code=codes[0] if codes else None,
            ) from error
        except smtplib.SMTPResponseException as error:
            raise DeliveryError(
                f"{where} answered {error.smtp_code} {_text(error.smtp_error)}",
                transient=400 <= error.smtp_code < 500,
                smtp_code=error.smtp_code,
            ) from error
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryError(f"{where}: {error}", transient=False) from error
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(
                f"{where}: TLS certificate not trusted: {error.verify_message}", transient=False
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            # Refused or dropped connections, timeouts, DNS failures: worth another try.
            raise DeliveryError(
                f"{where}: {str(error) or type(error).__name__}", transient=True
            ) from error

    def _connect(self) -> smtplib.SMTP:
        if self.use_tls:
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=_local_hostname(),
                timeout=self.timeout,
                context=self._tls_context(),
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=_local_hostname(), timeout=self.timeout
        )

    def _tls_context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()


def smtp_transport_from_url(
    url: str, *, ssl_context: ssl.SSLContext | None = None
) -> SmtpTransport:
    """A transport from a URL such as "smtp://user:pass@host:587?starttls=true" or
    "smtps://host:465". User name and password are percent-decoded. Query options:
    starttls=true|false (smtp only), timeout=<seconds>. Default ports: 25, 587 with
    STARTTLS, 465 for smtps."""
    parts = urlsplit(url)
    shown = _redacted(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"mail URL {shown!r} must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError(f"mail URL {shown!r} has no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"mail URL {shown!r} has a path or fragment; only host, port and query")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"mail URL {shown!r} has an invalid port") from None

    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"starttls", "timeout"})
    if unknown:
        raise ValueError(
            f"mail URL {shown!r} has unknown option(s) {', '.join(unknown)}; "
            "known: starttls, timeout"
        )
    starttls = _flag(options, "starttls", shown)
    if scheme == "smtps" and starttls:
        raise ValueError(f"mail URL {shown!r}: smtps is TLS already, starttls does not apply")
    timeout = _number(options, "timeout", 10.0, shown)

    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise ValueError(f"mail URL {shown!r} has a user name but no password")
    if not username and password is not None:
        raise ValueError(f"mail URL {shown!r} has a password but no user name")

    if port is None:
        if scheme == "smtps":
            port = DEFAULT_SMTPS_PORT
        else:
            port = DEFAULT_SUBMISSION_PORT if starttls else DEFAULT_SMTP_PORT
    return SmtpTransport(
        parts.hostname,
        port,
        username=username,
        password=password,
        starttls=starttls,
        use_tls=scheme == "smtps",
        timeout=timeout,
        ssl_context=ssl_context,
    )


def _message_id_header(message_id: str, sender: str) -> str:
    bare = message_id.removeprefix("<").removesuffix(">")
    if "@" not in bare:
        bare = f"{bare}@{parseaddr(sender)[1].rpartition('@')[2]}"
    return f"<{bare}>"


def _close(smtp: smtplib.SMTP) -> None:
    """Says QUIT but ignores its failure: once the server took the message, a failed
    goodbye must not make the caller send it again."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


@functools.cache
def _local_hostname() -> str:
    # smtplib would look this up (possibly slowly, through DNS) on every connection.
    return socket.getfqdn()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _flag(options: dict[str, list[str]], name: str, shown: str) -> bool:
    values = options.get(name)
    if not values:
        return False
    value = values[-1].lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"mail URL {shown!r}: {name}={values[-1]!r} is not true or false")


def _number(options: dict[str, list[str]], name: str, default: float, shown: str) -> float:
    values = options.get(name)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError:
        raise ValueError(f"mail URL {shown!r}: {name}={values[-1]!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"mail URL {shown!r}: {name} must be positive")
    return value

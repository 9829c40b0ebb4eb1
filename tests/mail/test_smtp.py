"""Delivery to a real SMTP server (aiosmtpd) on a loopback port."""

from __future__ import annotations

import socket
import time
from urllib.parse import quote

import pytest
from mcsv.v1 import common_pb2

from internal.mail import (
    DeliveryError,
    OutgoingEmail,
    SmtpTransport,
    render,
    smtp_transport_from_url,
)
from tests.mail.smtp_server import (
    BUSY_MAILBOX,
    PASSWORD,
    UNKNOWN_USER,
    USERNAME,
    smtp_server,
)
from tests.support.servers import free_port
from tests.support.tls import Pki, make_pki

SENDER = "mcsv <no-reply@mcsv.local>"

# aiosmtpd warns when AUTH is allowed without TLS, which the plain AUTH tests do on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def welcome_email(
    recipient: str = "zoe@example.com", message_id: str = "welcome-u1"
) -> OutgoingEmail:
    rendered = render(
        common_pb2.EMAIL_TEMPLATE_WELCOME, {"user_name": "Zoë <Admin>", "recipient": recipient}
    )
    return OutgoingEmail(
        sender=SENDER,
        recipient=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
    )


def test_send_delivers_a_multipart_email() -> None:
    email = welcome_email()
    with smtp_server() as server:
        SmtpTransport("127.0.0.1", server.port).send(email)

    [received] = server.received
    assert received.mail_from == "no-reply@mcsv.local"
    assert received.rcpt_tos == ["zoe@example.com"]
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == "zoe@example.com"
    assert message["Subject"] == "Welcome to mcsv, Zoë <Admin>!"
    assert message["Message-ID"] == "<welcome-u1@mcsv.local>"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    # SMTP carries lines ending in CRLF.
    assert text.get_content().replace("\r\n", "\n") == email.text
    assert html.get_content().replace("\r\n", "\n") == email.html
    assert "Hi Zoë <Admin>," in text.get_content()
    assert "Hi Zoë &lt;Admin&gt;," in html.get_content()


def test_a_full_message_id_is_sent_as_given() -> None:
    with smtp_server() as server:
        SmtpTransport("127.0.0.1", server.port).send(welcome_email(message_id="<k-7@jobs.example>"))

    assert server.received[0].message["Message-ID"] == "<k-7@jobs.example>"


def test_a_refused_connection_is_transient() -> None:
    port = free_port()  # nothing listens there

    with pytest.raises(DeliveryError, match=f"127.0.0.1:{port}") as caught:
        SmtpTransport("127.0.0.1", port).send(welcome_email())

    assert caught.value.transient
    assert caught.value.smtp_code is None


def test_a_server_that_never_answers_times_out_as_transient() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection but never greets
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            SmtpTransport("127.0.0.1", port, timeout=0.3).send(welcome_email())

    assert caught.value.transient
    assert time.monotonic() - started < 5


def test_a_recipient_refused_with_550_is_permanent() -> None:
    with smtp_server() as server, pytest.raises(DeliveryError) as caught:
        SmtpTransport("127.0.0.1", server.port).send(welcome_email(recipient=UNKNOWN_USER))

    assert not caught.value.transient
    assert caught.value.smtp_code == 550
    assert "550 5.1.1 No such user here" in str(caught.value)
    assert server.received == []


def test_a_recipient_deferred_with_450_is_transient() -> None:
    with smtp_server() as server, pytest.raises(DeliveryError) as caught:
        SmtpTransport("127.0.0.1", server.port).send(welcome_email(recipient=BUSY_MAILBOX))

    assert caught.value.transient
    assert caught.value.smtp_code == 450
    assert server.received == []


def test_auth_logs_in_with_the_configured_credentials() -> None:
    with smtp_server(require_auth=True) as server:
        transport = SmtpTransport("127.0.0.1", server.port, username=USERNAME, password=PASSWORD)
        transport.send(welcome_email())

    [received] = server.received
    assert received.login == USERNAME
    assert not received.encrypted


def test_a_wrong_password_is_permanent() -> None:
    with smtp_server(require_auth=True) as server, pytest.raises(DeliveryError) as caught:
        SmtpTransport("127.0.0.1", server.port, username=USERNAME, password="wrong").send(
            welcome_email()
        )

    assert not caught.value.transient
    assert caught.value.smtp_code == 535
    assert server.received == []


def test_a_server_that_requires_auth_refuses_an_anonymous_sender() -> None:
    with smtp_server(require_auth=True) as server, pytest.raises(DeliveryError) as caught:
        SmtpTransport("127.0.0.1", server.port).send(welcome_email())

    assert not caught.value.transient
    assert caught.value.smtp_code == 530
    assert server.received == []


def test_starttls_encrypts_the_session(pki: Pki) -> None:
    with smtp_server(starttls_context=pki.server_context()) as server:
        transport = SmtpTransport(
            "127.0.0.1", server.port, starttls=True, ssl_context=pki.client_context()
        )
        transport.send(welcome_email())

    [received] = server.received
    assert received.encrypted
    assert received.message["Message-ID"] == "<welcome-u1@mcsv.local>"


def test_starttls_refuses_a_certificate_it_cannot_verify(pki: Pki) -> None:
    # Without ssl_context the system's CAs apply, and they do not know the test CA.
    with (
        smtp_server(starttls_context=pki.server_context()) as server,
        pytest.raises(DeliveryError, match="certificate") as caught,
    ):
        SmtpTransport("127.0.0.1", server.port, starttls=True).send(welcome_email())

    assert not caught.value.transient
    assert server.received == []


def test_a_server_that_requires_starttls_refuses_plain_text(pki: Pki) -> None:
    with (
        smtp_server(starttls_context=pki.server_context()) as server,
        pytest.raises(DeliveryError) as caught,
    ):
        SmtpTransport("127.0.0.1", server.port).send(welcome_email())

    assert not caught.value.transient
    assert caught.value.smtp_code == 530
    assert server.received == []


def test_starttls_against_a_server_without_it_is_permanent() -> None:
    with smtp_server() as server, pytest.raises(DeliveryError, match="STARTTLS") as caught:
        SmtpTransport("127.0.0.1", server.port, starttls=True).send(welcome_email())

    assert not caught.value.transient
    assert server.received == []


def test_submission_url_with_starttls_and_auth(pki: Pki) -> None:
    with smtp_server(require_auth=True, starttls_context=pki.server_context()) as server:
        url = f"smtp://{USERNAME}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}?starttls=true"
        smtp_transport_from_url(url, ssl_context=pki.client_context()).send(welcome_email())

    [received] = server.received
    assert received.login == USERNAME
    assert received.encrypted


def test_smtps_url_speaks_tls_from_the_start(pki: Pki) -> None:
    with smtp_server(implicit_tls_context=pki.server_context()) as server:
        url = f"smtps://127.0.0.1:{server.port}"
        smtp_transport_from_url(url, ssl_context=pki.client_context()).send(welcome_email())

    [received] = server.received
    assert received.encrypted

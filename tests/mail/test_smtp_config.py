"""Mail URLs and the checks on transports and outgoing emails; the delivery itself is proved
against a real server in test_smtp.py."""

from __future__ import annotations

from typing import Any

import pytest

from internal.mail import OutgoingEmail, SmtpTransport, smtp_transport_from_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, None, False, False, 10.0)),
        (
            "smtp://mail.example.com?starttls=true",
            ("mail.example.com", 587, None, True, False, 10.0),
        ),
        (
            "smtp://me%40corp:pw@mail.example.com:2525?starttls=false&timeout=2.5",
            ("mail.example.com", 2525, "me@corp", False, False, 2.5),
        ),
        ("smtps://mail.example.com", ("mail.example.com", 465, None, False, True, 10.0)),
        ("SMTPS://Mail.Example.com:4650", ("mail.example.com", 4650, None, False, True, 10.0)),
        ("smtp://[::1]:1025/", ("::1", 1025, None, False, False, 10.0)),
    ],
)
def test_mail_urls(url: str, expected: tuple[Any, ...]) -> None:
    transport = smtp_transport_from_url(url)

    assert (
        transport.host,
        transport.port,
        transport.username,
        transport.starttls,
        transport.use_tls,
        transport.timeout,
    ) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mailbox:", "must start with smtp:// or smtps://"),
        ("http://mail.example.com", "must start with smtp:// or smtps://"),
        ("smtp://", "has no host"),
        ("smtp://mail.example.com:99999", "invalid port"),
        ("smtp://mail.example.com/inbox", "path"),
        ("smtp://mail.example.com?starttls=maybe", "starttls='maybe' is not true or false"),
        ("smtp://mail.example.com?tls=true", "unknown option\\(s\\) tls"),
        ("smtp://mail.example.com?timeout=soon", "timeout='soon' is not a number"),
        ("smtp://mail.example.com?timeout=0", "timeout must be positive"),
        ("smtps://mail.example.com?starttls=true", "smtps is TLS already"),
        ("smtp://me@mail.example.com", "user name but no password"),
        ("smtp://:pw@mail.example.com", "password but no user name"),
    ],
)
def test_bad_mail_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        smtp_transport_from_url(url)


def test_the_password_never_shows() -> None:
    with pytest.raises(ValueError) as caught:
        smtp_transport_from_url("smtp://me:topsecret@mail.example.com?bogus=1")
    assert "topsecret" not in str(caught.value)
    assert "me:***@mail.example.com" in str(caught.value)

    transport = smtp_transport_from_url("smtp://me:topsecret@mail.example.com?starttls=1")
    assert "topsecret" not in repr(transport)
    assert repr(transport) == "<SmtpTransport mail.example.com:587 starttls as 'me'>"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"starttls": True, "use_tls": True}, "exclude each other"),
        ({"username": "me"}, "needs a password"),
        ({"password": "pw"}, "needs a password"),
        ({"timeout": 0}, "must be positive"),
    ],
)
def test_inconsistent_transport_settings_are_refused(options: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SmtpTransport("mail.example.com", 25, **options)


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="not between 1 and 65535"):
        SmtpTransport("mail.example.com", port)


EMAIL = {
    "sender": "mcsv <no-reply@mcsv.local>",
    "recipient": "ada@example.com",
    "subject": "Hello",
    "text": "Hi\n",
    "html": "<p>Hi</p>\n",
    "message_id": "welcome-1",
}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("subject", "Hello\r\nBcc: all@example.com", "subject must be a single line"),
        ("recipient", "ada@example.com\nBcc: all@example.com", "recipient must be a single line"),
        ("recipient", "ada", "recipient='ada' is not an email address"),
        ("sender", "mcsv", "sender='mcsv' is not an email address"),
        ("message_id", "two words", "message_id='two words' must be printable ASCII"),
        ("message_id", "", "message_id='' must be printable ASCII"),
    ],
)
def test_malformed_emails_are_refused(field: str, value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OutgoingEmail(**{**EMAIL, field: value})

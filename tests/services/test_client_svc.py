"""client_svc as a real process on SQLite and PostgreSQL: ListNotifications pages through what
ReceiveNotification stored, oldest first, with since_sequence, kind and page tokens; bad
arguments name their field; a poller racing concurrent deliveries misses none; a database
from before sequences is numbered in received order."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import peewee
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2
from mcsv.v1.client_twirp import ClientServiceClient

from internal import config
from internal.auth import tokens
from internal.data import create_tables, open_database
from internal.peers import sync_transport
from internal.services.common.times import timestamp
from tests.e2e.backends import postgres_database
from tests.support.servers import free_port, serving

EMAIL = client_pb2.NOTIFICATION_KIND_EMAIL_DELIVERED
CONVERSION = client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED
List = client_pb2.ListNotificationsRequest


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/client_svc.db"
    else:
        with postgres_database() as url:
            yield url


# The keys of the services' tokens, the same for client_svc and for the test calling it.
AUTH_ENV = {
    "SERVICE_TOKEN_SECRET": "test-service-key-of-at-least-32-bytes",
    "USER_TOKEN_SECRET": "test-user-key-of-at-least-32-bytes!!",
    "OPERATOR_TOKEN": "test-operator",
    "STORAGE_SECRET": "test-storage-key",
}
SETTINGS = config.load(AUTH_ENV)


def as_user_svc() -> str:
    """A token of user_svc calling client_svc, as user_svc sends its notifications."""
    return tokens.service_token(SETTINGS, "user_svc", "client_svc")


@contextmanager
def client_svc(database_url: str, use_json: bool = False) -> Iterator[ClientServiceClient]:
    """cmd/client_svc.py serving on a free loopback port, and its generated client."""
    url = f"http://127.0.0.1:{free_port()}"
    with (
        serving(
            f"client_svc-{url.rsplit(':', 1)[1]}",
            [sys.executable, "cmd/client_svc.py"],
            url + "/ready",
            env={"CLIENT_SVC_URL": url, "DATABASE_URL": database_url, **AUTH_ENV},
            ready=lambda answer: answer.status_code == 200,
        ),
        closing(sync_transport([url])) as transport,
        ClientServiceClient(
            url, transport=transport, use_json=use_json, credentials=as_user_svc
        ) as client,
    ):
        yield client


def notification(n: int, conversion: bool = False) -> client_pb2.ReceiveNotificationRequest:
    """The n-th workflow's final callback, as user_svc sends it."""
    sent = client_pb2.ReceiveNotificationRequest(
        notification_id=f"notification-{n}", sent_at=timestamp(1_700_000_000 + n)
    )
    if conversion:
        sent.conversion_finished.CopyFrom(
            common_pb2.ConversionReport(
                conversion_id=f"conversion-{n}",
                user_id=f"user-{n}",
                outcome=common_pb2.OUTCOME_SUCCEEDED,
                pdf_url=f"http://storage.test/pdfs/{n}.pdf",
            )
        )
    else:
        sent.email_delivered.CopyFrom(
            common_pb2.EmailDelivery(
                user_id=f"user-{n}",
                recipient=f"user{n}@example.com",
                template=common_pb2.EMAIL_TEMPLATE_WELCOME,
                outcome=common_pb2.OUTCOME_SUCCEEDED,
                email_id=f"email-{n}",
            )
        )
    return sent


def every_page(client: ClientServiceClient, request: List) -> list[list[client_pb2.Notification]]:
    """The pages of a listing, following next_page_token to the end."""
    pages = []
    while True:
        page = client.list_notifications(request)
        pages.append(list(page.notifications))
        if not page.next_page_token:
            return pages
        request = List(
            since_sequence=request.since_sequence,
            kind=request.kind,
            page_size=request.page_size,
            page_token=page.next_page_token,
        )


def flat(pages: list[list[client_pb2.Notification]]) -> list[client_pb2.Notification]:
    return [n for page in pages for n in page]


def ids(notifications: Iterable[client_pb2.Notification]) -> list[str]:
    return [n.notification_id for n in notifications]


def test_list_notifications_pages_oldest_first_with_since_and_kind(tmp_path: Path) -> None:
    sent = [notification(n, conversion=n % 4 == 0) for n in range(40)]  # 10 conversions
    with client_svc(f"sqlite:///{tmp_path}/client_svc.db") as client:
        assert client.list_notifications(List()) == client_pb2.ListNotificationsResponse()
        for request in sent:
            assert client.receive_notification(request).first_delivery
        assert not client.receive_notification(sent[3]).first_delivery  # stored once

        pages = every_page(client, List(page_size=7))
        assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
        listed = flat(pages)
        assert ids(listed) == [s.notification_id for s in sent]
        assert [n.sequence for n in listed] == list(range(1, 41))
        received = [n.received_at.ToNanoseconds() for n in listed]
        assert received == sorted(received) and received[0] > 0
        for n, request in zip(listed, sent, strict=True):
            assert n.sent_at == request.sent_at
            if request.HasField("conversion_finished"):
                assert n.kind == CONVERSION and n.subject_id == f"conversion-{n.sequence - 1}"
                assert n.conversion_finished == request.conversion_finished
                assert not n.HasField("email_delivered")
            else:
                assert n.kind == EMAIL and n.subject_id == f"user-{n.sequence - 1}"
                assert n.email_delivered == request.email_delivered

        conversions = every_page(client, List(kind=CONVERSION, page_size=3))
        assert [len(p) for p in conversions] == [3, 3, 3, 1]
        assert flat(conversions) == [n for n in listed if n.kind == CONVERSION]
        since = every_page(client, List(since_sequence=25, page_size=4))
        assert flat(since) == listed[25:]
        emails_since = every_page(client, List(since_sequence=25, kind=EMAIL, page_size=4))
        assert flat(emails_since) == [n for n in listed[25:] if n.kind == EMAIL]
        assert every_page(client, List(since_sequence=40)) == [[]]

        whole = client.list_notifications(List())  # page_size 0: 50
        assert list(whole.notifications) == listed and not whole.next_page_token
        clamped = client.list_notifications(List(page_size=5000))  # clamped to 1000
        assert list(clamped.notifications) == listed and not clamped.next_page_token
        assert {whole.latest_sequence, clamped.latest_sequence} == {40}
        filtered = client.list_notifications(List(since_sequence=39, kind=CONVERSION))
        assert not filtered.notifications and filtered.latest_sequence == 40

    with client_svc(f"sqlite:///{tmp_path}/client_svc.db", use_json=True) as client:
        page = client.list_notifications(List(kind=CONVERSION, page_size=2))
        assert list(page.notifications) == [n for n in listed if n.kind == CONVERSION][:2]
        assert list(client.list_notifications(List(page_token=page.next_page_token)).notifications)
        assert not client.receive_notification(sent[0]).first_delivery  # survives a restart


def test_bad_list_arguments_are_invalid_argument_naming_the_field(tmp_path: Path) -> None:
    unknown_kind = List()
    unknown_kind.kind = 7  # type: ignore[assignment]  # a value this version does not know
    cases = [
        (List(page_token="not a token"), "page_token"),
        (List(page_token="LTE="), "page_token"),  # base64 of -1
        (List(page_size=-1), "page_size"),
        (List(since_sequence=-1), "since_sequence"),
        (List(wait_ms=-1), "wait_ms"),
        (unknown_kind, "kind"),
    ]
    with client_svc(f"sqlite:///{tmp_path}/client_svc.db") as client:
        for request, argument in cases:
            with pytest.raises(TwirpError) as refused:
                client.list_notifications(request)
            assert refused.value.code is ErrorCode.INVALID_ARGUMENT
            assert refused.value.meta["argument"] == argument


def test_a_long_poll_answers_with_the_notification_that_arrives_while_it_waits(
    tmp_path: Path,
) -> None:
    with client_svc(f"sqlite:///{tmp_path}/client_svc.db") as poller:
        url = poller.base_url.removesuffix("/twirp")
        poller.receive_notification(notification(0))
        nothing_yet = poller.list_notifications(List(since_sequence=1, wait_ms=100))
        answers: list[client_pb2.ListNotificationsResponse] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                poller.list_notifications(List(since_sequence=1, kind=CONVERSION, wait_ms=20_000))
            )
        )
        waiting.start()
        with ClientServiceClient(url, credentials=as_user_svc) as sender:
            sender.receive_notification(notification(1))  # not the kind it waits for
            sender.receive_notification(notification(2, conversion=True))
        waiting.join()
    assert list(nothing_yet.notifications) == []  # the wait ended with nothing to say
    assert ids(answers[0].notifications) == ["notification-2"]


def test_a_poller_racing_concurrent_deliveries_misses_none(database_url: str) -> None:
    writers, each = 4, 40
    with client_svc(database_url) as poller:
        url = poller.base_url.removesuffix("/twirp")
        first: list[bool] = []

        def deliver(writer: int) -> None:
            with ClientServiceClient(url, credentials=as_user_svc) as client:
                for n in range(writer * each, (writer + 1) * each):
                    request = notification(n, conversion=n % 3 == 0)
                    first.append(client.receive_notification(request).first_delivery)
                    first.append(client.receive_notification(request).first_delivery)

        threads = [threading.Thread(target=deliver, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        seen: list[client_pb2.Notification] = []
        while True:
            done = not any(thread.is_alive() for thread in threads)  # before the poll
            cursor = seen[-1].sequence if seen else 0
            page = poller.list_notifications(List(since_sequence=cursor, page_size=7))
            seen += page.notifications
            if done and not page.next_page_token:
                break
        for thread in threads:
            thread.join()
    total = writers * each
    assert sorted(first) == [False] * total + [True] * total
    assert [n.sequence for n in seen] == list(range(1, total + 1))  # in order, none skipped
    assert sorted(ids(seen)) == sorted(f"notification-{n}" for n in range(total))


class OldNotification(peewee.Model):
    """client_svc's table as it shipped before ListNotifications: no sequence."""

    notification_id = peewee.TextField(primary_key=True)
    kind = peewee.TextField()
    subject_id = peewee.TextField(index=True)
    received_at = peewee.DoubleField()
    payload = peewee.BlobField()

    class Meta:
        table_name = "notification"
        legacy_table_names = False  # index names from the table name, as client_svc's model


def test_an_older_database_is_numbered_in_received_order(database_url: str) -> None:
    database = open_database(database_url)
    create_tables(database, [OldNotification])
    received = {7: 300.0, 8: 100.0, 9: 200.0}
    with database.connection_context():
        for n, at in received.items():
            OldNotification.create(
                notification_id=f"notification-{n}",
                kind="email",
                subject_id=f"user-{n}",
                received_at=at,
                payload=notification(n).SerializeToString(),
            )
    with client_svc(database_url) as client:
        listed = client.list_notifications(List()).notifications
        assert ids(listed) == ["notification-8", "notification-9", "notification-7"]
        assert [n.sequence for n in listed] == [1, 2, 3]
        assert [n.received_at.seconds for n in listed] == [100, 200, 300]
        assert listed[0].email_delivered == notification(8).email_delivered
        assert client.receive_notification(notification(10, conversion=True)).first_delivery
        assert not client.receive_notification(notification(8)).first_delivery
        newest = client.list_notifications(List(since_sequence=3)).notifications
        assert [(n.sequence, n.kind) for n in newest] == [(4, CONVERSION)]
    with database.connection_context():
        columns = {c.name: c for c in database.get_columns("notification")}
        indexes = {i.name: i for i in database.get_indexes("notification")}
    assert not columns["sequence"].null
    assert indexes["notification_sequence"].unique
    assert indexes["notification_kind_sequence"].columns == ["kind", "sequence"]
    assert "notification_subject_id" not in indexes  # no query reads by it (migration 3)


def delivery(
    n: int, version: int, outcome: common_pb2.Outcome
) -> client_pb2.ReceiveNotificationRequest:
    """Workflow n's welcome email outcome, of this version."""
    sent = notification(n)
    sent.email_delivered.version = version
    sent.email_delivered.outcome = outcome
    return sent


def test_a_higher_version_replaces_a_notification_and_a_lower_one_is_ignored(
    tmp_path: Path,
) -> None:
    failed = delivery(1, 4, common_pb2.OUTCOME_FAILED)
    succeeded = delivery(1, 9, common_pb2.OUTCOME_SUCCEEDED)
    cancelled_late = delivery(1, 6, common_pb2.OUTCOME_CANCELLED)
    with client_svc(f"sqlite:///{tmp_path}/client_svc.db") as client:
        first = client.receive_notification(failed)
        assert first.first_delivery and first.stored
        client.receive_notification(notification(2))
        seen = client.list_notifications(List()).notifications
        assert [(n.notification_id, n.sequence) for n in seen] == [
            ("notification-1", 1), ("notification-2", 2),
        ]  # fmt: skip

        newer = client.receive_notification(succeeded)
        assert not newer.first_delivery and newer.stored
        for stale in (succeeded, cancelled_late, failed):  # a repeat, or older than what is kept
            answer = client.receive_notification(stale)
            assert not answer.first_delivery and not answer.stored

        # A poller resuming after what it saw finds the replacement, with a new sequence.
        (changed,) = client.list_notifications(List(since_sequence=2)).notifications
        assert (changed.notification_id, changed.sequence) == ("notification-1", 3)
        assert changed.email_delivered == succeeded.email_delivered
        everything = client.list_notifications(List()).notifications
        assert [(n.notification_id, n.sequence) for n in everything] == [
            ("notification-2", 2), ("notification-1", 3),
        ]  # fmt: skip

"""user_svc as a real process whose job_svc cannot be reached at first (its URL a closed
port): CreateUser and ConvertImage still answer OK, their job requests wait in the outbox,
and once job_svc listens there the relay enqueues them, with the one a killed process left
behind between its commit and its send. A database from before the outbox is brought up to
date. With client_svc: a conversion keeps the outcome of the highest version, and a failed
one's upload until its retention ends."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import peewee
import pytest
from mcsv.v1 import client_pb2, common_pb2, job_pb2, user_pb2
from mcsv.v1.client_twirp import ClientServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal import config, storage
from internal.auth import OPERATOR
from internal.data import create_tables, open_database, write_transaction
from internal.peers import SyncPeers
from internal.services.user_svc import outbox
from internal.services.user_svc.models import NAME, ConversionRow, UserRow, open_users
from internal.services.user_svc.outbox import OutboxRow
from internal.services.user_svc.service import may_convert, welcome_request
from tests.e2e.backends import postgres_database
from tests.e2e.images import make_image
from tests.support.servers import ROOT, free_port, serving


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.1)


def test_job_requests_wait_in_the_outbox_until_job_svc_is_back(tmp_path: Path) -> None:
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "JOB_SVC_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there, yet
    }
    settings = config.load(env)
    database = open_users(settings.database_url_for(NAME))
    # What a user_svc SIGKILLed between its commit and its send leaves: a user and the intent
    # of their welcome email, never sent.
    with database.connection_context(), write_transaction(database):
        left = UserRow.create(id="u-0", name="Left", email="left@example.com", created_at=0.0)
        request = welcome_request(left).SerializeToString()
        outbox.add(outbox.EMAIL, "welcome:u-0", "u-0", request, {}, lease=0)

    def intents() -> list[OutboxRow]:
        with database.connection_context():
            return list(OutboxRow.select().order_by(OutboxRow.created_at))

    user_svc = [sys.executable, str(ROOT / "cmd" / "user_svc.py")]
    job_svc = [sys.executable, str(ROOT / "cmd" / "job_svc.py")]
    with (
        serving("user_svc-outbox", user_svc, settings.url("user_svc") + "/ready", env=env,
                ready=lambda answer: answer.status_code == 200),
        SyncPeers(settings, identity=OPERATOR) as peers,
    ):  # fmt: skip
        users, jobs = peers.client(UserServiceClient), peers.client(JobServiceClient)
        created = users.create_user(user_pb2.CreateUserRequest(name="Ada", email="ada@example.com"))
        accepted = users.convert_image(
            user_pb2.ConvertImageRequest(
                user_id=created.user.id,
                filename="photo.png",
                image_data=make_image("png", 64, 48),
                idempotency_key="upload-1",
            ),
            headers={"Authorization": f"Bearer {created.api_token}"},  # its own token
        ).conversion
        assert created.job_id == "" and accepted.job_id == ""  # job_svc is down: OK all the same
        assert accepted.state == user_pb2.CONVERSION_STATE_PENDING
        again = users.create_user(user_pb2.CreateUserRequest(name="Ada", email="ada@example.com"))
        assert again.user.id == created.user.id
        # The relay keeps trying, each intent with its backoff.
        eventually(lambda: all(i.attempts >= 2 for i in intents()))
        assert {i.state for i in intents()} == {outbox.PENDING}
        assert "unavailable" in intents()[0].error

        with serving("job_svc-outbox", job_svc, settings.url("job_svc") + "/ready", env=env):
            eventually(lambda: all(i.state == outbox.SENT for i in intents()))
            sent = {i.key: i.job_id for i in intents()}
            assert set(sent) == {
                "welcome:u-0",
                f"welcome:{created.user.id}",
                f"conversion:{accepted.id}",
            }
            for key, job_id in sent.items():  # each the job its intent asked for
                job = jobs.get_job(job_pb2.GetJobRequest(id=job_id)).job
                kind, _, subject = key.partition(":")
                if kind == "welcome":
                    assert job.email.user_id == subject
                else:
                    assert job.conversion.conversion_id == subject
            conversion = users.get_conversion(user_pb2.GetConversionRequest(id=accepted.id))
            assert conversion.conversion.job_id == sent[f"conversion:{accepted.id}"]
            # A repeated CreateUser now answers with the job the first one's intent became.
            repeated = users.create_user(
                user_pb2.CreateUserRequest(name="Ada", email="ada@example.com")
            )
            assert repeated.job_id == sent[f"welcome:{created.user.id}"]
    assert len(intents()) == 3  # nothing was added by the repeated requests


class OldConversion(peewee.Model):
    """conversions as they were before idempotency keys (migration 1)."""

    id = peewee.TextField(primary_key=True)
    user_id = peewee.TextField(index=True)
    filename = peewee.TextField()
    options = peewee.BlobField()
    state = peewee.IntegerField()
    job_id = peewee.TextField(default="")
    source_key = peewee.TextField()
    source_bytes = peewee.IntegerField()
    pdf_url = peewee.TextField(default="")
    result = peewee.BlobField(null=True)
    error = peewee.TextField(default="")
    created_at = peewee.DoubleField()
    finished_at = peewee.DoubleField(null=True)

    class Meta:
        table_name = "conversions"


def test_an_older_database_gets_the_outbox_and_keyed_conversions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/user_svc.db"
    old = open_database(url)
    create_tables(old, [UserRow, OldConversion], service=NAME)  # recorded at version 0
    with old.connection_context():
        OldConversion.create(
            id="c-1", user_id="u-1", filename="a.png", options=b"", state=1, source_key="k",
            source_bytes=1, created_at=0.0,
        )  # fmt: skip
    old.close()

    database = open_users(url)
    with database.connection_context():
        assert "outbox" in database.get_tables()
        indexes = {i.name: i for i in database.get_indexes("conversions")}
        assert indexes["conversions_user_id_idempotency_key"].unique
        # user_id's own index went (migration 4): the unique one begins with the column.
        assert [i.columns for i in indexes.values()].count(["user_id"]) == 0
        assert ConversionRow.get_by_id("c-1").idempotency_key is None
        for conversion_id in ("c-2", "c-3"):  # no key: never a clash
            ConversionRow.create(
                id=conversion_id, user_id="u-1", filename="b.png", options=b"", state=1,
                source_key="k", source_bytes=1, created_at=0.0,
            )  # fmt: skip
        ConversionRow.update(idempotency_key="key").where(ConversionRow.id == "c-2").execute()
        with pytest.raises(peewee.IntegrityError):
            ConversionRow.update(idempotency_key="key").where(ConversionRow.id == "c-3").execute()
    open_users(url)  # again: nothing left to migrate


def report(version: int, outcome: common_pb2.Outcome) -> user_pb2.ConversionCompleteRequest:
    return user_pb2.ConversionCompleteRequest(
        report=common_pb2.ConversionReport(
            conversion_id="c-1", user_id="u-1", outcome=outcome, job_id="j-1", version=version,
            error="" if outcome == common_pb2.OUTCOME_SUCCEEDED else f"outcome {version}",
        )
    )  # fmt: skip


def test_the_latest_outcome_wins_and_a_failed_upload_is_kept_until_its_retention_ends(
    tmp_path: Path,
) -> None:
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "CLIENT_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "JOB_SVC_URL": f"http://127.0.0.1:{free_port()}",  # not needed here
        "FAILED_UPLOAD_RETENTION_SECONDS": "3",
    }
    settings = config.load(env)
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    database = open_users(settings.database_url_for(NAME))
    now = time.time()
    with database.connection_context():
        UserRow.create(id="u-1", name="Ada", email="ada@example.com", created_at=now)
        for conversion in ("c-1", "c-expired"):
            ConversionRow.create(
                id=conversion, user_id="u-1", filename="a.png", options=b"",
                state=user_pb2.CONVERSION_STATE_PENDING, source_key=f"uploads/{conversion}/a.png",
                source_bytes=3, created_at=now,
            )  # fmt: skip
            store.put(f"uploads/{conversion}/a.png", b"png", "image/png")
        ConversionRow.update(
            state=user_pb2.CONVERSION_STATE_FAILED, upload_kept_until=now - 1
        ).where(ConversionRow.id == "c-expired").execute()

    def ready(answer: httpx.Response) -> bool:
        return answer.status_code == 200

    with (
        serving("client_svc-for-user_svc", [sys.executable, str(ROOT / "cmd" / "client_svc.py")],
                settings.url("client_svc") + "/ready", env=env, ready=ready),
        serving("user_svc-retention", [sys.executable, str(ROOT / "cmd" / "user_svc.py")],
                settings.url("user_svc") + "/ready", env=env, ready=ready),
        SyncPeers(settings, identity="job_svc") as peers,  # ConversionComplete: job_svc only
    ):  # fmt: skip
        users = peers.client(UserServiceClient)
        failed = users.conversion_complete(report(5, common_pb2.OUTCOME_FAILED)).conversion
        assert failed.state == user_pb2.CONVERSION_STATE_FAILED and failed.error == "outcome 5"
        assert failed.upload_kept_until.ToSeconds() > time.time()  # kept, for a retry
        assert store.exists("uploads/c-1/a.png")

        done = users.conversion_complete(report(9, common_pb2.OUTCOME_SUCCEEDED)).conversion
        assert done.state == user_pb2.CONVERSION_STATE_SUCCEEDED and not done.error
        assert not done.HasField("upload_kept_until") and not store.exists("uploads/c-1/a.png")
        # Stopped after telling the client, before removing the original: the repeated report
        # removes it.
        store.put("uploads/c-1/a.png", b"png", "image/png")
        again = users.conversion_complete(report(9, common_pb2.OUTCOME_SUCCEEDED)).conversion
        assert again.state == user_pb2.CONVERSION_STATE_SUCCEEDED
        assert not store.exists("uploads/c-1/a.png")
        late = users.conversion_complete(report(7, common_pb2.OUTCOME_CANCELLED)).conversion
        assert late.state == user_pb2.CONVERSION_STATE_SUCCEEDED  # older than what is kept

        # The client was told each, and keeps the latest.
        listed = peers.client(ClientServiceClient).list_notifications(
            client_pb2.ListNotificationsRequest()
        )
        (kept,) = listed.notifications
        assert kept.conversion_finished.version == 9

        deadline = time.monotonic() + 20
        while store.exists("uploads/c-expired/a.png") and time.monotonic() < deadline:
            time.sleep(0.1)  # the periodic sweep
        assert not store.exists("uploads/c-expired/a.png")
    with database.connection_context():
        assert ConversionRow.get_by_id("c-expired").upload_kept_until is None


def test_a_put_url_is_minted_while_the_conversion_may_still_be_converted() -> None:
    """Pending, or failed or cancelled with its upload kept (a RetryJob within the
    retention): yes. Succeeded (the PDF exists), or its upload's retention over: no."""

    def row(state: int, kept_until: float | None = None) -> ConversionRow:
        return ConversionRow(id="c", state=state, upload_kept_until=kept_until)

    later, earlier = time.time() + 60, time.time() - 1
    assert may_convert(row(user_pb2.CONVERSION_STATE_PENDING))
    assert may_convert(row(user_pb2.CONVERSION_STATE_FAILED, later))
    assert may_convert(row(user_pb2.CONVERSION_STATE_CANCELLED, later))
    assert not may_convert(row(user_pb2.CONVERSION_STATE_FAILED))
    assert not may_convert(row(user_pb2.CONVERSION_STATE_FAILED, earlier))
    assert not may_convert(row(user_pb2.CONVERSION_STATE_SUCCEEDED))


def test_concurrent_large_uploads_all_arrive_intact_through_a_small_body_budget(
    tmp_path: Path,
) -> None:
    """Twelve 2 MB uploads at once against a 3 MB body budget: they go in one or two at a
    time, the others held back by TCP; every one is accepted and stored byte for byte."""
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "JOB_SVC_URL": f"http://127.0.0.1:{free_port()}",  # down: the outbox keeps the jobs
        "RPC_BODY_BUDGET_BYTES": str(3 * 1024 * 1024),
    }
    settings = config.load(env)
    images = [os.urandom(2 * 1024 * 1024) for _ in range(12)]
    user_svc = [sys.executable, str(ROOT / "cmd" / "user_svc.py")]
    with (
        serving("user_svc-budget", user_svc, settings.url("user_svc") + "/ready", env=env,
                ready=lambda answer: answer.status_code == 200),
        SyncPeers(settings, identity=OPERATOR) as peers,
    ):  # fmt: skip
        users = peers.client(UserServiceClient, timeout=60)
        created = users.create_user(user_pb2.CreateUserRequest(name="Big", email="big@example.com"))

        def upload(index: int) -> user_pb2.Conversion:
            return users.convert_image(
                user_pb2.ConvertImageRequest(
                    user_id=created.user.id, filename=f"big-{index}.png",
                    image_data=images[index],
                ),
                headers={"Authorization": f"Bearer {created.api_token}"},
            ).conversion  # fmt: skip

        with ThreadPoolExecutor(len(images)) as pool:
            accepted = list(pool.map(upload, range(len(images))))
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    database = open_users(settings.database_url_for(NAME))
    with database.connection_context():
        for image, conversion in zip(images, accepted, strict=True):
            assert conversion.state == user_pb2.CONVERSION_STATE_PENDING
            row = ConversionRow.get(ConversionRow.id == conversion.id)
            assert row.source_bytes == len(image)
            assert store.get(row.source_key) == image


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_finished_intents_are_pruned_once_their_retention_ends(
    tmp_path: Path, backend: str
) -> None:
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path}/users.db"
            if backend == "sqlite"
            else stack.enter_context(postgres_database())
        )
        database = open_users(url)
        now = time.time()
        rows = {  # key: (state, created_at, sent_at)
            "sent-long-ago": (outbox.SENT, now - 9000, now - 8000),
            "sent-lately": (outbox.SENT, now - 9000, now - 10),
            "failed-long-ago": (outbox.FAILED, now - 9000, None),
            "failed-lately": (outbox.FAILED, now - 10, None),
            "pending-long-ago": (outbox.PENDING, now - 9000, None),
            "rejected-long-ago": (outbox.REJECTED, now - 9000, None),
        }
        with database.connection_context(), write_transaction(database):
            for key, (state, created_at, sent_at) in rows.items():
                outbox.add(outbox.EMAIL, key, "u-1", b"", {}, lease=0)
                OutboxRow.update(state=state, created_at=created_at, sent_at=sent_at).where(
                    OutboxRow.key == key
                ).execute()
        assert outbox.prune(database, before=now - 3600, limit=1) == 1  # the oldest first
        assert outbox.get(database, "failed-long-ago") is None  # finished 9000 s ago
        assert outbox.prune(database, before=now - 3600) == 1
        with database.connection_context():
            left = {row.key for row in OutboxRow.select()}
        # What is still to do stays, however old; what finished lately stays as a record.
        assert left == {"sent-lately", "failed-lately", "pending-long-ago", "rejected-long-ago"}
        assert outbox.prune(database, before=now - 3600) == 0
        database.close()

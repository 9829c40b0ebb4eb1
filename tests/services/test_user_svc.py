"""user_svc as a real process whose job_svc cannot be reached (its URL a closed port): an
upload that cannot be enqueued is refused, and neither its stored file nor its PENDING
conversion is left behind. With client_svc: a conversion keeps the outcome of the highest
version, and a failed one's upload until its retention ends."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2, user_pb2
from mcsv.v1.client_twirp import ClientServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal import config, storage
from internal.data import open_database
from internal.peers import SyncPeers
from internal.services.user_svc.models import NAME, ConversionRow, UserRow, create_schema
from tests.e2e.images import make_image
from tests.support.servers import ROOT, free_port, serving


def test_an_upload_that_cannot_be_enqueued_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {
        "MCSV_DATA_DIR": str(tmp_path),
        "USER_SVC_URL": f"http://127.0.0.1:{free_port()}",
        "JOB_SVC_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    settings = config.load(env)
    database = open_database(settings.database_url_for(NAME))
    create_schema(database)
    with database.connection_context():
        UserRow.create(id="u-1", name="Ada", email="ada@example.com", created_at=time.time())

    argv = [sys.executable, str(ROOT / "cmd" / "user_svc.py")]
    url = settings.url("user_svc")
    with (
        serving("user_svc-no-job_svc", argv, url + "/ready", env=env,
                ready=lambda answer: answer.status_code == 200),
        SyncPeers(settings) as peers,
    ):  # fmt: skip
        users = peers.client(UserServiceClient)
        with pytest.raises(TwirpError) as refused:
            users.convert_image(
                user_pb2.ConvertImageRequest(
                    user_id="u-1", filename="photo.png", image_data=make_image("png", 64, 48)
                )
            )
        assert users.get_user(user_pb2.GetUserRequest(id="u-1")).user.name == "Ada"

    assert refused.value.code is ErrorCode.UNAVAILABLE
    with database.connection_context():
        assert list(ConversionRow.select()) == []
    stored = [path for path in (tmp_path / "storage").rglob("*") if path.is_file()]
    assert stored == []


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
    database = open_database(settings.database_url_for(NAME))
    create_schema(database)
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
        SyncPeers(settings) as peers,
    ):  # fmt: skip
        users = peers.client(UserServiceClient)
        failed = users.conversion_complete(report(5, common_pb2.OUTCOME_FAILED)).conversion
        assert failed.state == user_pb2.CONVERSION_STATE_FAILED and failed.error == "outcome 5"
        assert failed.upload_kept_until.ToSeconds() > time.time()  # kept, for a retry
        assert store.exists("uploads/c-1/a.png")

        done = users.conversion_complete(report(9, common_pb2.OUTCOME_SUCCEEDED)).conversion
        assert done.state == user_pb2.CONVERSION_STATE_SUCCEEDED and not done.error
        assert not done.HasField("upload_kept_until") and not store.exists("uploads/c-1/a.png")
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

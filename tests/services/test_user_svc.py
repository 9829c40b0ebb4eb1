"""user_svc as a real process whose job_svc cannot be reached (its URL a closed port): an
upload that cannot be enqueued is refused, and neither its stored file nor its PENDING
conversion is left behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import user_pb2
from mcsv.v1.user_twirp import UserServiceClient

from internal import config
from internal.data import create_tables, open_database
from internal.peers import SyncPeers
from internal.services.user_svc.models import MODELS, NAME, ConversionRow, UserRow
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
    create_tables(database, MODELS, service=NAME)
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

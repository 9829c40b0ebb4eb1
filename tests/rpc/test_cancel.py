"""A call whose client goes away is cancelled on the server, as Go's net/http cancels a
request's context: a worker killed mid-call must not leave its call running on (it could use
a one-time upload URL that the retried attempt needs). Calls whose client waits finish.
Served by uvicorn, as the services are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import user_pb2
from mcsv.v1.user_twirp import UserServiceClient

from tests.support.servers import asgi_server

HOLD = 1.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    marks = tmp_path_factory.mktemp("cancel") / "marks"
    env = {"MCSV_TEST_HOLD_SECONDS": str(HOLD), "MCSV_TEST_MARKS": str(marks)}
    with asgi_server("tests.support.cancel_app:app", env=env) as url:
        yield url, marks


def _marks(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_call_whose_client_went_away_is_cancelled(served: tuple[str, Path]) -> None:
    url, marks = served
    with UserServiceClient(url, timeout=0.2) as client, pytest.raises(TwirpError) as gave_up:
        client.get_user(user_pb2.GetUserRequest(id="abandoned"))
    assert gave_up.value.code is ErrorCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + HOLD * 3
    while "cancelled abandoned" not in _marks(marks) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(HOLD)  # had it run on, it would have finished by now
    assert "cancelled abandoned" in _marks(marks)
    assert "finished abandoned" not in _marks(marks)


def test_a_call_whose_client_waits_finishes(served: tuple[str, Path]) -> None:
    url, marks = served
    with UserServiceClient(url, timeout=HOLD * 5) as client:
        answer = client.get_user(user_pb2.GetUserRequest(id="patient"))
    assert answer.user.id == "patient"
    assert "finished patient" in _marks(marks)

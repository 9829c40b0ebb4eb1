"""internal.peers against the echo servers on loopback (tests/support/echo_app.py): a peer's
calls are spread over its service's replicas, a replica that refuses connections is skipped,
and every call is measured by the tracing transport underneath."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import job_pb2, user_pb2
from mcsv.v1.job_twirp import AsyncJobServiceClient
from mcsv.v1.user_twirp import UserServiceClient
from prometheus_client import REGISTRY

from internal import config
from internal.auth import OPERATOR
from internal.observability import context
from internal.peers import AsyncPeers, SyncPeers
from tests.support.servers import free_port


def calls_counted(rpc_service: str, method: str, code: str) -> float:
    labels = {"service": context.SERVICE.get(), "rpc_service": rpc_service, "method": method,
              "code": code}  # fmt: skip
    return REGISTRY.get_sample_value("mcsv_rpc_client_requests_total", labels) or 0.0


def settings_with(tmp_path: Path, **urls: str) -> config.Settings:
    return config.load({"MCSV_DATA_DIR": str(tmp_path), **urls})


def test_a_peer_skips_a_replica_that_refuses_and_every_call_is_measured(
    echo_url: str, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = settings_with(tmp_path, USER_SVC_URL=f"{closed},{echo_url}")
    before = calls_counted("mcsv.v1.UserService", "GetUser", "ok")
    with SyncPeers(settings, identity=OPERATOR) as peers:
        users = peers.client(UserServiceClient)
        for _ in range(4):  # two of them aimed first at the closed replica
            assert users.get_user(user_pb2.GetUserRequest()) == user_pb2.GetUserResponse()
    assert calls_counted("mcsv.v1.UserService", "GetUser", "ok") == before + 4


@pytest.mark.anyio
async def test_an_async_peer_with_no_replica_answering_is_unavailable(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = settings_with(tmp_path, JOB_SVC_URL=closed)
    before = calls_counted("mcsv.v1.JobService", "GetJob", "unavailable")
    async with AsyncPeers(settings, identity=OPERATOR) as peers:
        jobs = peers.client(AsyncJobServiceClient, timeout=5)
        with pytest.raises(TwirpError) as refused:
            await jobs.get_job(job_pb2.GetJobRequest(id="j-1"))
    assert refused.value.code is ErrorCode.UNAVAILABLE
    assert calls_counted("mcsv.v1.JobService", "GetJob", "unavailable") == before + 1

"""Every generated client (sync and async, protobuf and JSON) calls every RPC of every
generated server on a real uvicorn server, and every Twirp error code comes back as the
client's TwirpError with its message and metadata."""

from __future__ import annotations

import pytest
from mcsv.twirp import ErrorCode, TwirpError

from tests.rpc.catalog import RPCS, Rpc
from tests.support.samples import sample

ENCODINGS = [pytest.param(False, id="protobuf"), pytest.param(True, id="json")]


def test_every_service_is_covered() -> None:
    assert {rpc.service for rpc in RPCS} == {
        "ClientService",
        "UserService",
        "JobService",
        "EmailService",
        "ImageService",
    }


@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_sync_client_round_trips_every_field(echo_url: str, rpc: Rpc, use_json: bool) -> None:
    with rpc.client_class(asynchronous=False)(echo_url, use_json=use_json) as client:
        call = getattr(client, rpc.python_name)
        assert call(sample(rpc.request_type)) == sample(rpc.response_type)
        assert call(rpc.request_type()) == rpc.response_type()


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_async_client_round_trips_every_field(
    echo_url: str, rpc: Rpc, use_json: bool
) -> None:
    async with rpc.client_class(asynchronous=True)(echo_url, use_json=use_json) as client:
        call = getattr(client, rpc.python_name)
        assert await call(sample(rpc.request_type)) == sample(rpc.response_type)
        assert await call(rpc.request_type()) == rpc.response_type()


USER_CREATE = next(rpc for rpc in RPCS if rpc.method == "CreateUser")  # plain-method handler
JOB_GET = next(rpc for rpc in RPCS if rpc.method == "GetJob")  # async handler


def _expected(code: ErrorCode) -> TwirpError:
    return TwirpError(code, f"raised {code} on purpose", {"answer": "42", "code": code.value})


@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_reaches_the_sync_client(
    echo_url: str, code: ErrorCode, use_json: bool
) -> None:
    client = USER_CREATE.client_class(asynchronous=False)(
        echo_url, use_json=use_json, headers={"x-test-raise": code.value}
    )
    with client, pytest.raises(TwirpError) as raised:
        client.create_user(sample(USER_CREATE.request_type))
    assert raised.value == _expected(code)
    assert raised.value.http_status == code.http_status


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
async def test_every_error_code_reaches_the_async_client(
    echo_url: str, code: ErrorCode, use_json: bool
) -> None:
    async with JOB_GET.client_class(asynchronous=True)(echo_url, use_json=use_json) as client:
        with pytest.raises(TwirpError) as raised:
            await client.get_job(JOB_GET.request_type(), headers={"x-test-raise": code.value})
    assert raised.value == _expected(code)


def test_a_request_the_server_did_not_expect_is_reported_with_its_content(echo_url: str) -> None:
    from mcsv.v1 import user_pb2, user_twirp

    with user_twirp.UserServiceClient(echo_url) as client, pytest.raises(TwirpError) as raised:
        client.get_user(user_pb2.GetUserRequest(id="someone-else"))
    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert "someone-else" in raised.value.meta["received"]

"""Interoperability with Twirp implementations that are not ours:

- our generated clients (sync and async, protobuf and JSON) call the same services served
  by the unmodified `twirp` runtime (stock_url);
- the `twirp` package's own client calls our TwirpApp (echo_url);
- a raw HTTP/1.1 request written on a plain socket, as a client in any language would send
  it, calls our TwirpApp with JSON.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import job_pb2, user_pb2
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserServiceClient
from twirp.client import TwirpClient
from twirp.context import Context
from twirp.errors import Errors
from twirp.exceptions import TwirpServerException

from tests.rpc.catalog import RPCS, Rpc
from tests.support.samples import sample

ENCODINGS = [pytest.param(False, id="protobuf"), pytest.param(True, id="json")]

# A plain-method handler (UserService) and async ones (JobService) whose messages have enums,
# maps, repeated fields, timestamps and int64s.
INTEROP_RPCS = [
    rpc
    for rpc in RPCS
    if str(rpc) in {"UserService.CreateUser", "JobService.GetJob", "JobService.ListJobs"}
]


def test_the_chosen_rpcs_exist() -> None:
    assert len(INTEROP_RPCS) == 3


# (a) our generated clients against the stock `twirp` runtime


@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", INTEROP_RPCS, ids=str)
def test_sync_client_calls_the_stock_runtime(stock_url: str, rpc: Rpc, use_json: bool) -> None:
    with rpc.client_class(asynchronous=False)(stock_url, use_json=use_json) as client:
        call = getattr(client, rpc.python_name)
        assert call(sample(rpc.request_type)) == sample(rpc.response_type)
        assert call(rpc.request_type()) == rpc.response_type()


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", INTEROP_RPCS, ids=str)
async def test_async_client_calls_the_stock_runtime(
    stock_url: str, rpc: Rpc, use_json: bool
) -> None:
    async with rpc.client_class(asynchronous=True)(stock_url, use_json=use_json) as client:
        call = getattr(client, rpc.python_name)
        assert await call(sample(rpc.request_type)) == sample(rpc.response_type)
        assert await call(rpc.request_type()) == rpc.response_type()


# Errors made by the stock runtime itself reach our clients with their code, message and meta.


@pytest.mark.parametrize("use_json", ENCODINGS)
def test_sync_client_receives_stock_runtime_errors(stock_url: str, use_json: bool) -> None:
    request = user_pb2.CreateUserRequest()
    # no service at this prefix: the stock runtime answers not_found (ours: bad_route)
    with (
        UserServiceClient(stock_url, prefix="/no-such-prefix", use_json=use_json) as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(request)
    assert caught.value == TwirpError(ErrorCode.NOT_FOUND, "not found")
    # a handler answering the wrong message type: the stock runtime's internal error
    with (
        UserServiceClient(stock_url, use_json=use_json) as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(request, headers={"x-test-wrong-type": "1"})
    assert caught.value.code == ErrorCode.INTERNAL
    assert "expecting: mcsv.v1.CreateUserResponse" in caught.value.msg


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", ENCODINGS)
async def test_async_client_receives_stock_runtime_errors(stock_url: str, use_json: bool) -> None:
    request = user_pb2.CreateUserRequest()
    async with AsyncUserServiceClient(
        stock_url, prefix="/no-such-prefix", use_json=use_json
    ) as client:
        with pytest.raises(TwirpError) as caught:
            await client.create_user(request)
    assert caught.value == TwirpError(ErrorCode.NOT_FOUND, "not found")
    async with AsyncUserServiceClient(stock_url, use_json=use_json) as client:
        with pytest.raises(TwirpError) as caught:
            await client.create_user(request, headers={"x-test-wrong-type": "1"})
    assert caught.value.code == ErrorCode.INTERNAL
    assert "expecting: mcsv.v1.CreateUserResponse" in caught.value.msg


# The echo implementations raise mcsv.twirp.TwirpError. The stock runtime only knows its own
# twirp.exceptions.TwirpServerException: it answers any other exception with 500
# {"code": "internal", "msg": "Internal non-Twirp Error"}, and the client must deliver that
# as it is. (On TwirpApp the same request gives not_found: see (b) and test_roundtrip.)
RAISE_NOT_FOUND = {"x-test-raise": "not_found"}
NON_TWIRP_ERROR = TwirpError(ErrorCode.INTERNAL, "Internal non-Twirp Error")


@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", INTEROP_RPCS, ids=str)
def test_sync_client_receives_handler_errors_from_the_stock_runtime(
    stock_url: str, rpc: Rpc, use_json: bool
) -> None:
    with (
        rpc.client_class(asynchronous=False)(stock_url, use_json=use_json) as client,
        pytest.raises(TwirpError) as caught,
    ):
        getattr(client, rpc.python_name)(sample(rpc.request_type), headers=RAISE_NOT_FOUND)
    assert caught.value == NON_TWIRP_ERROR


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", ENCODINGS)
@pytest.mark.parametrize("rpc", INTEROP_RPCS, ids=str)
async def test_async_client_receives_handler_errors_from_the_stock_runtime(
    stock_url: str, rpc: Rpc, use_json: bool
) -> None:
    async with rpc.client_class(asynchronous=True)(stock_url, use_json=use_json) as client:
        with pytest.raises(TwirpError) as caught:
            await getattr(client, rpc.python_name)(
                sample(rpc.request_type), headers=RAISE_NOT_FOUND
            )
    assert caught.value == NON_TWIRP_ERROR


# (b) the `twirp` package's client against our TwirpApp


# TwirpClient._make_request is that package's client API: its generated clients call it.
def _stock_call(
    echo_url: str, rpc: Rpc, request: Message, headers: dict[str, str] | None = None
) -> Any:
    client = TwirpClient(address=echo_url, timeout=5)
    return client._make_request(
        url=rpc.path,
        ctx=Context(headers=dict(headers or {})),
        request=request,
        response_obj=rpc.response_type,
    )


@pytest.mark.parametrize("rpc", INTEROP_RPCS, ids=str)
def test_stock_client_calls_our_server(echo_url: str, rpc: Rpc) -> None:
    assert _stock_call(echo_url, rpc, sample(rpc.request_type)) == sample(rpc.response_type)
    assert _stock_call(echo_url, rpc, rpc.request_type()) == rpc.response_type()


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_stock_client_receives_every_error_code_of_our_server(
    echo_url: str, code: ErrorCode
) -> None:
    rpc = INTEROP_RPCS[0]
    with pytest.raises(TwirpServerException) as caught:
        _stock_call(echo_url, rpc, sample(rpc.request_type), {"x-test-raise": code.value})
    assert caught.value.code == Errors(code.value)
    assert caught.value.message == f"raised {code} on purpose"
    assert caught.value.meta == {"answer": "42", "code": code.value}


def test_stock_client_gets_bad_route_for_an_unknown_method(echo_url: str) -> None:
    rpc = INTEROP_RPCS[0]
    client = TwirpClient(address=echo_url, timeout=5)
    with pytest.raises(TwirpServerException) as caught:
        client._make_request(
            url="/twirp/mcsv.v1.UserService/NoSuchMethod",
            ctx=Context(),
            request=sample(rpc.request_type),
            response_obj=rpc.response_type,
        )
    assert caught.value.code == Errors.BadRoute
    assert (
        caught.value.meta["twirp_invalid_route"] == "POST /twirp/mcsv.v1.UserService/NoSuchMethod"
    )


# (c) a raw HTTP/1.1 request on a plain socket


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def raw_post(base_url: str, path: str, body: bytes, content_type: str) -> RawResponse:
    """POSTs with nothing but a socket and reads the answer up to the end of the connection."""
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(head.encode("ascii") + body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, payload = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        payload = _dechunk(payload)
    else:
        assert len(payload) == int(headers["content-length"])
    return RawResponse(int(status), headers, payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


CREATE_USER = "/twirp/mcsv.v1.UserService/CreateUser"
# sample(CreateUserRequest) and sample(CreateUserResponse), written out by hand as JSON
CREATE_USER_JSON = '{"name": "name--é✓", "email": "email--é✓"}'
CREATED_USER_JSON = {
    "user": {
        "id": "id--é✓",
        "name": "name--é✓",
        "email": "email--é✓",
        "created_at": "2026-11-21T10:20:30.123456Z",
    },
    "job_id": "job_id--é✓",
    "api_token": "api_token--é✓",
}


def test_the_hand_written_json_is_the_sample() -> None:
    request = sample(user_pb2.CreateUserRequest)
    assert json.loads(CREATE_USER_JSON) == {"name": request.name, "email": request.email}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_raw_json_request_to_our_server(echo_url: str, content_type: str) -> None:
    response = raw_post(echo_url, CREATE_USER, CREATE_USER_JSON.encode(), content_type)
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body.decode("utf-8")) == CREATED_USER_JSON


def test_raw_empty_json_request_to_our_server(echo_url: str) -> None:
    response = raw_post(echo_url, CREATE_USER, b"{}", "application/json")
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    # every field is emitted, an unset message as null, with proto names
    assert json.loads(response.body) == {"user": None, "job_id": "", "api_token": ""}


# sample(ListJobsRequest) by hand, with lowerCamelCase names and the enum by name
LIST_JOBS_JSON = (
    '{"queue": "queue--é✓", "state": "JOB_STATE_EXECUTING", "actor": "actor--é✓",'
    ' "pageSize": -4, "pageToken": "page_token--é✓"}'
)


def test_raw_camel_case_json_request_to_our_server(echo_url: str) -> None:
    """lowerCamelCase names and enums by name are accepted; the answer uses proto names and
    enums by name, and decodes to the sample."""
    assert json_format.Parse(LIST_JOBS_JSON, job_pb2.ListJobsRequest()) == sample(
        job_pb2.ListJobsRequest
    )
    path = "/twirp/mcsv.v1.JobService/ListJobs"
    response = raw_post(echo_url, path, LIST_JOBS_JSON.encode(), "application/json")
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    answer = json.loads(response.body)
    assert set(answer) == {"jobs", "next_page_token"}
    job = answer["jobs"][0]
    assert {"max_attempts", "inserted_at", "scheduled_at"} <= set(job)
    expected = sample(job_pb2.ListJobsResponse)
    assert job["state"] == job_pb2.JobState.Name(expected.jobs[0].state)
    assert json_format.ParseDict(answer, job_pb2.ListJobsResponse()) == expected


def test_raw_request_error_is_twirp_json(echo_url: str) -> None:
    response = raw_post(
        echo_url, "/twirp/mcsv.v1.UserService/NoSuchMethod", b"{}", "application/json"
    )
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    error = json.loads(response.body)
    assert error["code"] == "bad_route"
    assert isinstance(error["msg"], str)
    assert error["meta"] == {"twirp_invalid_route": "POST /twirp/mcsv.v1.UserService/NoSuchMethod"}

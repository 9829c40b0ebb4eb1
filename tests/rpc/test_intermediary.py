"""The generated clients (sync and async) against answers that do not come from a Twirp server:
proxies, load balancers and gateways (tests/support/intermediary_app.py), a closed port and a
server slower than the timeout. Every failure is a TwirpError, with the code and metadata
the reference Go client (errorFromResponse, twirpErrorFromIntermediary) gives it.

Also: headers given to the client and to a call reach the server, and a request of the wrong
message type is refused before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import user_pb2
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserServiceClient

from tests.support.intermediary_app import ANSWERS, REDIRECT_LOCATION
from tests.support.servers import asgi_server, free_port

REQUEST = user_pb2.CreateUserRequest(name="Ada", email="ada@example.com")
CALL_TIMEOUT = 0.3
INTERMEDIARY = "http_error_from_intermediary"


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    with asgi_server("tests.support.intermediary_app:app") as url:
        yield url


@dataclass(frozen=True)
class Case:
    """A canned answer of the intermediary app and the error the reference client makes of it."""

    answer: str
    code: ErrorCode
    meta: dict[str, str] | None = None  # the exact meta; None: not from an intermediary
    use_json: bool = False
    msg_has: list[str] = field(default_factory=list)


def _from_intermediary(answer: str, code: ErrorCode) -> Case:
    """An answer the reference client reads by HTTP status: the body goes into meta."""
    canned = ANSWERS[answer]
    meta = {INTERMEDIARY: "true", "status_code": str(canned.status), "body": canned.body.decode()}
    return Case(answer, code, meta, msg_has=["intermediary", str(canned.status)])


CASES = [
    _from_intermediary("502-html", ErrorCode.UNAVAILABLE),
    _from_intermediary("503-text", ErrorCode.UNAVAILABLE),
    _from_intermediary("504-empty", ErrorCode.UNAVAILABLE),
    _from_intermediary("429-text", ErrorCode.RESOURCE_EXHAUSTED),
    _from_intermediary("401-text", ErrorCode.UNAUTHENTICATED),
    _from_intermediary("403-text", ErrorCode.PERMISSION_DENIED),
    _from_intermediary("404-text", ErrorCode.BAD_ROUTE),
    _from_intermediary("400-text", ErrorCode.INTERNAL),
    _from_intermediary("418-text", ErrorCode.UNKNOWN),
    _from_intermediary("500-json-without-code", ErrorCode.UNKNOWN),
    # The reference decodes error bodies with DisallowUnknownFields: a JSON object with a
    # field other than code/msg/meta is not a Twirp error, whatever its "code".
    _from_intermediary("429-json-of-the-gateway", ErrorCode.RESOURCE_EXHAUSTED),
    # Redirects are never followed; the location goes into meta instead of the body.
    Case(
        "302-redirect",
        ErrorCode.INTERNAL,
        {INTERMEDIARY: "true", "status_code": "302", "location": REDIRECT_LOCATION},
        msg_has=["302", REDIRECT_LOCATION],
    ),
    # A Twirp-shaped error with a code that does not exist: internal, the body in meta.
    Case(
        "500-json-invalid-code",
        ErrorCode.INTERNAL,
        {"body": '{"code":"not_a_code","msg":"x"}'},
        msg_has=["not_a_code"],
    ),
    # 200 answers that are not the response message: internal.
    Case("200-html", ErrorCode.INTERNAL),
    Case("200-html", ErrorCode.INTERNAL, use_json=True),
    Case("200-undecodable-protobuf", ErrorCode.INTERNAL),
    Case("200-undecodable-json", ErrorCode.INTERNAL, use_json=True),
]


def _case_id(case: Case) -> str:
    return f"{case.answer}-{'json' if case.use_json else 'protobuf'}"


def assert_error(error: TwirpError, case: Case) -> None:
    assert error.code == case.code, repr(error)
    for text in case.msg_has:
        assert text in error.msg, repr(error)
    if case.meta is not None:
        assert error.meta == case.meta
    else:
        assert INTERMEDIARY not in error.meta, repr(error)


def test_every_canned_answer_is_covered() -> None:
    assert {case.answer for case in CASES} == set(ANSWERS)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_sync_client_reads_intermediary_answers_as_the_reference(
    proxy_url: str, case: Case
) -> None:
    with (
        UserServiceClient(proxy_url, use_json=case.use_json) as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(REQUEST, headers={"x-proxy-answer": case.answer})
    assert_error(caught.value, case)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=_case_id)
async def test_async_client_reads_intermediary_answers_as_the_reference(
    proxy_url: str, case: Case
) -> None:
    async with AsyncUserServiceClient(proxy_url, use_json=case.use_json) as client:
        with pytest.raises(TwirpError) as caught:
            await client.create_user(REQUEST, headers={"x-proxy-answer": case.answer})
    assert_error(caught.value, case)


def test_the_redirect_target_would_have_answered(proxy_url: str) -> None:
    """Guards the redirect cases: following the redirect would have succeeded, so an error
    there really means the client did not follow it."""
    for method in ("GET", "POST"):
        response = httpx.request(method, proxy_url + REDIRECT_LOCATION)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/protobuf"


# Transport failures


def test_sync_client_closed_port_is_unavailable() -> None:
    with (
        UserServiceClient(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(REQUEST, timeout=5)
    assert caught.value.code == ErrorCode.UNAVAILABLE


@pytest.mark.anyio
async def test_async_client_closed_port_is_unavailable() -> None:
    async with AsyncUserServiceClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(TwirpError) as caught:
            await client.create_user(REQUEST, timeout=5)
    assert caught.value.code == ErrorCode.UNAVAILABLE


SLOW = {"x-proxy-answer": "slow"}


def test_sync_client_timeout_is_deadline_exceeded(proxy_url: str) -> None:
    with UserServiceClient(proxy_url) as client:
        started = time.monotonic()
        with pytest.raises(TwirpError) as caught:
            client.create_user(REQUEST, headers=SLOW, timeout=CALL_TIMEOUT)
        elapsed = time.monotonic() - started
    assert caught.value.code == ErrorCode.DEADLINE_EXCEEDED
    assert elapsed < 2, elapsed


@pytest.mark.anyio
async def test_async_client_timeout_is_deadline_exceeded(proxy_url: str) -> None:
    async with AsyncUserServiceClient(proxy_url) as client:
        started = time.monotonic()
        with pytest.raises(TwirpError) as caught:
            await client.create_user(REQUEST, headers=SLOW, timeout=CALL_TIMEOUT)
        elapsed = time.monotonic() - started
    assert caught.value.code == ErrorCode.DEADLINE_EXCEEDED
    assert elapsed < 2, elapsed


def test_client_level_timeout_applies_to_every_call(proxy_url: str) -> None:
    with (
        UserServiceClient(proxy_url, timeout=CALL_TIMEOUT) as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(REQUEST, headers=SLOW)
    assert caught.value.code == ErrorCode.DEADLINE_EXCEEDED


# Headers
# The intermediary app answers x-proxy-answer: echo with a Twirp error (failed_precondition)
# whose meta holds the headers it received, all values of each.

CLIENT_HEADERS = {"x-client": "mcsv-tests", "x-request-id": "client-default"}
ECHO = {"x-proxy-answer": "echo"}


def _sync_echo(
    url: str, client_headers: dict[str, str], call_headers: dict[str, str]
) -> TwirpError:
    with (
        UserServiceClient(url, headers=client_headers) as client,
        pytest.raises(TwirpError) as caught,
    ):
        client.create_user(REQUEST, headers=call_headers)
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION, repr(caught.value)
    return caught.value


def test_sync_client_sends_client_and_call_headers(proxy_url: str) -> None:
    error = _sync_echo(proxy_url, CLIENT_HEADERS, {**ECHO, "x-request-id": "req-123"})
    assert error.meta == {
        "x-client": "mcsv-tests",
        "x-request-id": "req-123",  # the call's header wins over the client's
        "content-type": "application/protobuf",
        "accept": "application/protobuf",
    }


def test_sync_client_headers_apply_when_the_call_has_none(proxy_url: str) -> None:
    error = _sync_echo(proxy_url, {**CLIENT_HEADERS, **ECHO}, {})
    assert error.meta["x-client"] == "mcsv-tests"
    assert error.meta["x-request-id"] == "client-default"


@pytest.mark.anyio
@pytest.mark.parametrize("use_json", [False, True], ids=["protobuf", "json"])
async def test_async_client_sends_client_and_call_headers(proxy_url: str, use_json: bool) -> None:
    media_type = "application/json" if use_json else "application/protobuf"
    async with AsyncUserServiceClient(
        proxy_url, headers=CLIENT_HEADERS, use_json=use_json
    ) as client:
        with pytest.raises(TwirpError) as caught:
            await client.create_user(REQUEST, headers={**ECHO, "x-request-id": "req-456"})
        assert caught.value.meta == {
            "x-client": "mcsv-tests",
            "x-request-id": "req-456",
            "content-type": media_type,
            "accept": media_type,
        }
        with pytest.raises(TwirpError) as caught:
            await client.create_user(REQUEST, headers=ECHO)
        assert caught.value.meta["x-request-id"] == "client-default"


@pytest.mark.parametrize(
    ("client_headers", "call_headers"),
    [
        pytest.param({"Content-Type": "text/plain"}, {"Accept": "text/html"}, id="canonical"),
        pytest.param({"content-type": "text/plain"}, {"accept": "text/html"}, id="lower-case"),
        pytest.param({}, {"CONTENT-TYPE": "text/plain", "ACCEPT": "text/html"}, id="upper-case"),
    ],
)
def test_headers_cannot_change_the_encoding(
    proxy_url: str, client_headers: dict[str, str], call_headers: dict[str, str]
) -> None:
    """The client sets Content-Type and Accept itself, as the reference does (Header.Set after
    the custom headers): a header given under any spelling must not be sent besides them."""
    error = _sync_echo(proxy_url, client_headers, {**ECHO, **call_headers})
    assert error.meta["content-type"] == "application/protobuf"
    assert error.meta["accept"] == "application/protobuf"


# A request of the wrong message type


def _posts(url: str) -> int:
    count = httpx.get(url + "/posts").json()["posts"]
    assert isinstance(count, int)
    return count


def test_sync_client_refuses_a_wrong_request_type_before_sending(proxy_url: str) -> None:
    before = _posts(proxy_url)
    with (
        UserServiceClient(proxy_url) as client,
        pytest.raises(TypeError, match=r"mcsv\.v1\.CreateUserRequest"),
    ):
        client.create_user(user_pb2.GetUserRequest(id="u-1"))  # type: ignore[arg-type]
    assert _posts(proxy_url) == before


@pytest.mark.anyio
async def test_async_client_refuses_a_wrong_request_type_before_sending(proxy_url: str) -> None:
    before = _posts(proxy_url)
    async with AsyncUserServiceClient(proxy_url) as client:
        with pytest.raises(TypeError, match=r"mcsv\.v1\.CreateUserRequest"):
            await client.create_user(user_pb2.GetUserRequest(id="u-1"))  # type: ignore[arg-type]
    assert _posts(proxy_url) == before


def test_the_post_counter_counts(proxy_url: str) -> None:
    """Guards the two tests above: a request that is sent is counted."""
    before = _posts(proxy_url)
    _sync_echo(proxy_url, {}, ECHO)
    assert _posts(proxy_url) == before + 1

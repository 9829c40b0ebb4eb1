"""Bad input on the wire, against the generated runtime's TwirpApp on real servers: bytes that
are not base64 in JSON, enum values the contract does not define (at any depth, in repeated
fields and map values, by number and by name), bodies that stall, and the protobuf and JSON
that must be malformed rather than a crash.

The mcsv services are served by tests/support/echo_app.py; deeper shapes by the probe service
(tests/rpc/proto), generated here by buf with our plugin and served by uvicorn on its own."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from mcsv.twirp import ErrorCode
from mcsv.twirp.transport import KEEPALIVE_SECONDS
from mcsv.v1 import client_pb2, common_pb2, job_pb2, user_pb2

from tests.codegen.helpers import buf_generate
from tests.support.servers import ROOT, asgi_server, free_port, serving, uvicorn_argv

PROTOBUF = {"Content-Type": "application/protobuf"}
JSON = {"Content-Type": "application/json"}
LIST_JOBS = "/twirp/mcsv.v1.JobService/ListJobs"
GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"
CONVERT_IMAGE = "/twirp/mcsv.v1.UserService/ConvertImage"
RECEIVE = "/twirp/mcsv.v1.ClientService/ReceiveNotification"
ECHO = "/twirp/probe.v1.ProbeService/Echo"


def assert_error(response: httpx.Response, code: ErrorCode) -> dict[str, Any]:
    assert response.status_code == code.http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code.value, body
    assert all(isinstance(v, str) for v in body.get("meta", {}).values())
    return body


def assert_unknown_enum(response: httpx.Response, path: str) -> None:
    body = assert_error(response, ErrorCode.INVALID_ARGUMENT)
    assert body["meta"] == {"argument": path}
    assert body["msg"].startswith(f"{path}: "), body["msg"]


@pytest.mark.parametrize(
    "body",
    [b'{"options": "\\ud800"}', b'{"filename": "\\udc00x"}', b'{"options": {"\\ud800": 1}}'],
    ids=["message-field", "string-field", "key"],
)
def test_a_lone_surrogate_in_json_is_malformed_not_internal(echo_url: str, body: bytes) -> None:
    """Valid JSON text, but no Unicode string: protobuf's C parser fails on it in its own way."""
    response = httpx.post(echo_url + CONVERT_IMAGE, headers=JSON, content=body)
    assert_error(response, ErrorCode.MALFORMED)


# Base64 in JSON bytes fields


@pytest.mark.parametrize(
    "value",
    [
        "!!!!",  # outside both alphabets
        "YW Jj",  # a space
        "ab+-",  # both alphabets at once
        "Y",  # one character short of a byte
        "YQ=",  # padding that does not complete a quantum
        "YQ==YQ==",  # padding in the middle
        "YWJj\n",  # a newline
        "é===",
    ],
)
def test_invalid_base64_is_malformed(echo_url: str, value: str) -> None:
    response = httpx.post(echo_url + CONVERT_IMAGE, headers=JSON, json={"image_data": value})
    body = assert_error(response, ErrorCode.MALFORMED)
    assert "image_data" in body["msg"] and "base64" in body["msg"]


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("YWJj", b"abc"),  # standard, padded (no padding needed)
        ("YWI=", b"ab"),  # standard, padded
        ("YWI", b"ab"),  # standard, unpadded
        ("-_8", b"\xfb\xff"),  # URL-safe, unpadded
        ("-_8=", b"\xfb\xff"),  # URL-safe, padded
        ("+/8=", b"\xfb\xff"),  # standard with + and /
    ],
)
def test_valid_base64_in_either_alphabet_is_accepted(
    echo_url: str, value: str, decoded: bytes
) -> None:
    """The echo service answers any request that is neither empty nor its sample with
    invalid_argument and the request it decoded in meta: the bytes arrived decoded."""
    response = httpx.post(echo_url + CONVERT_IMAGE, headers=JSON, json={"image_data": value})
    body = assert_error(response, ErrorCode.INVALID_ARGUMENT)
    received = json_format.Parse(body["meta"]["received"], user_pb2.ConvertImageRequest())
    assert received.image_data == decoded


# Unknown enum values on the mcsv services


def test_an_unknown_enum_number_in_protobuf_is_invalid_argument(echo_url: str) -> None:
    request = job_pb2.ListJobsRequest(state=99)  # type: ignore[arg-type]  # an open enum
    response = httpx.post(
        echo_url + LIST_JOBS, headers=PROTOBUF, content=request.SerializeToString()
    )
    assert_unknown_enum(response, "state")
    assert "99" in response.json()["msg"] and "mcsv.v1.JobState" in response.json()["msg"]


@pytest.mark.parametrize("state", [99, "99", "JOB_STATE_BOGUS"], ids=["number", "string", "name"])
def test_an_unknown_enum_value_in_json_is_invalid_argument(echo_url: str, state: object) -> None:
    response = httpx.post(echo_url + LIST_JOBS, headers=JSON, json={"state": state})
    assert_unknown_enum(response, "state")


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_an_unknown_enum_value_inside_a_oneof_message(echo_url: str, encoding: str) -> None:
    request = client_pb2.ReceiveNotificationRequest(
        notification_id="n-1",
        email_delivered=common_pb2.EmailDelivery(outcome=7),  # type: ignore[arg-type]
    )
    response = _post(echo_url + RECEIVE, request, encoding)
    assert_unknown_enum(response, "email_delivered.outcome")


def test_known_enum_values_still_pass(echo_url: str) -> None:
    for state in ("JOB_STATE_EXECUTING", 3, "3"):
        response = httpx.post(echo_url + LIST_JOBS, headers=JSON, json={"state": state})
        body = assert_error(response, ErrorCode.INVALID_ARGUMENT)  # not the sample, not empty
        assert "received" in body["meta"]


def _post(url: str, request: Message, encoding: str) -> httpx.Response:
    if encoding == "json":
        return httpx.post(url, headers=JSON, json=json_format.MessageToDict(request))
    return httpx.post(url, headers=PROTOBUF, content=request.SerializeToString())


# Malformed, never internal


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", id="overlong-varint"),
        pytest.param(b"\x0a\xff\xff\xff\xff\x0f", id="length-past-the-end"),
        pytest.param(b"\x0f", id="invalid-wire-type"),
        pytest.param(b"\x0a", id="truncated-tag"),
        pytest.param(b"\x00\x00\x00", id="field-number-zero"),
    ],
)
def test_bad_protobuf_is_malformed(echo_url: str, body: bytes) -> None:
    assert_error(
        httpx.post(echo_url + GET_JOB, headers=PROTOBUF, content=body), ErrorCode.MALFORMED
    )


def test_bad_utf8_in_a_string_is_malformed(echo_url: str) -> None:
    body = b"\x0a\x03\xff\xfe\xfd"  # GetJobRequest.id (field 1), 3 bytes that are not UTF-8
    assert_error(
        httpx.post(echo_url + GET_JOB, headers=PROTOBUF, content=body), ErrorCode.MALFORMED
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"page_size": 1e999}', id="infinite-int32"),
        pytest.param(b'{"page_size": 99999999999}', id="int32-overflow"),
        pytest.param(b'{"page_size": 1.5}', id="fractional-int"),
        pytest.param(b'{"page_size": ' + b"9" * 5000 + b"}", id="5000-digit-number"),
        pytest.param(b'{"queue": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-nesting"),
        pytest.param(b'{"queue": "\\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"state": {}}', id="object-for-an-enum"),
        pytest.param(b'{"queue": "a", "queue": 1}', id="duplicate-key-wrong-type"),
    ],
)
def test_bad_json_is_malformed(echo_url: str, body: bytes) -> None:
    assert_error(httpx.post(echo_url + LIST_JOBS, headers=JSON, content=body), ErrorCode.MALFORMED)


def test_a_huge_string_is_decoded(echo_url: str) -> None:
    """200 KiB of text is under the echo app's limit: decoded, and answered by the handler."""
    request = job_pb2.ListJobsRequest(queue="é" * 100_000)
    for encoding in ("protobuf", "json"):
        body = assert_error(
            _post(echo_url + LIST_JOBS, request, encoding), ErrorCode.INVALID_ARGUMENT
        )
        assert "received" in body["meta"]


# The probe service: enum values and bytes at every depth


@dataclass(frozen=True)
class Probe:
    url: str
    pb2: ModuleType


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    out = tmp_path_factory.mktemp("probe")
    result = buf_generate(
        ROOT / "tests" / "rpc" / "proto",
        [
            {"local": "protoc-gen-mcsv-twirp", "out": str(out), "strategy": "all"},
            {"protoc_builtin": "python", "out": str(out)},
        ],
    )
    assert result.returncode == 0, result.stderr
    (out / "probe_app.py").write_text(PROBE_APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = uvicorn_argv("probe_app:app", port)
    with serving(
        f"probe-{port}",
        argv,
        url + "/",
        env={"PYTHONPATH": str(out)},
        ready=lambda answer: answer.status_code == 404,  # bad_route: the app answers
    ):
        yield Probe(url, _load(out / "probe" / "v1" / "probe_pb2.py"))


PROBE_APP = """\
from probe.twirp import TwirpApp
from probe.v1 import probe_pb2
from probe.v1.probe_twirp_server import ProbeServiceServer


class Probe:
    async def echo(self, ctx, request):
        return probe_pb2.EchoResponse(request=request)


app = TwirpApp(ProbeServiceServer(service=Probe()))
"""


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_pb2_for_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _deep_cases(pb2: Any) -> list[tuple[Message, str]]:
    """(request, path of its one unknown enum value)."""
    red = pb2.COLOR_RED
    cases = []

    request = pb2.EchoRequest(color=99)
    cases.append((request, "color"))

    request = pb2.EchoRequest()
    request.branch.leaf.color = 42
    cases.append((request, "branch.leaf.color"))

    request = pb2.EchoRequest()
    request.branch.leaf.colors.extend([red, red, 5])
    cases.append((request, "branch.leaf.colors[2]"))

    request = pb2.EchoRequest()
    request.branches.add()
    request.branches.add().leaves.add().by_name['x"y'] = 9
    cases.append((request, 'branches[1].leaves[0].by_name["x\\"y"]'))

    request = pb2.EchoRequest()
    request.branch.by_id[7].colors.append(-1)
    cases.append((request, "branch.by_id[7].colors[0]"))

    request = pb2.EchoRequest()
    request.next.next.next.branch.leaf.color = 3
    cases.append((request, "next.next.next.branch.leaf.color"))
    return cases


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_unknown_enum_numbers_at_any_depth(probe: Probe, encoding: str) -> None:
    for request, path in _deep_cases(probe.pb2):
        assert_unknown_enum(_post(probe.url + ECHO, request, encoding), path)


@pytest.mark.parametrize(
    ("request_json", "path"),
    [
        ({"color": "COLOR_GREEN"}, "color"),
        ({"branch": {"leaf": {"colors": ["COLOR_RED", "GREEN"]}}}, "branch.leaf.colors[1]"),
        ({"branch": {"leaf": {"byName": {"k": "NOPE"}}}}, 'branch.leaf.by_name["k"]'),
        ({"branches": [{}, {"byId": {"-3": {"color": "X"}}}]}, "branches[1].by_id[-3].color"),
        ({"next": {"next": {"color": "COLOR_RED "}}}, "next.next.color"),
    ],
)
def test_unknown_enum_names_at_any_depth(probe: Probe, request_json: object, path: str) -> None:
    assert_unknown_enum(httpx.post(probe.url + ECHO, headers=JSON, json=request_json), path)


@pytest.mark.parametrize(
    ("request_json", "path"),
    [
        ({"branch": {"leaf": {"blob": "!"}}}, "branch.leaf.blob"),
        ({"branch": {"leaf": {"blobs": ["YQ==", "Y"]}}}, "branch.leaf.blobs[1]"),
        ({"branch": {"blobs": {"k": "a+b-"}}}, 'branch.blobs["k"]'),
        ({"wrapped": "*"}, "wrapped"),
        ({"next": {"branches": [{"leaf": {"blob": "YQ=a"}}]}}, "next.branches[0].leaf.blob"),
    ],
)
def test_invalid_base64_at_any_depth_is_malformed(
    probe: Probe, request_json: object, path: str
) -> None:
    body = assert_error(
        httpx.post(probe.url + ECHO, headers=JSON, json=request_json), ErrorCode.MALFORMED
    )
    assert path in body["msg"]


def test_a_request_with_every_shape_and_known_values_round_trips(probe: Probe) -> None:
    pb2 = probe.pb2
    request = pb2.EchoRequest(color=pb2.COLOR_BLUE, text="t", number=-(2**62))
    request.branch.leaf.colors.extend([pb2.COLOR_RED, pb2.COLOR_BLUE])
    request.branch.leaf.by_name["a"] = pb2.COLOR_RED
    request.branch.by_id[1].blob = b"\x00\xff"
    request.branch.blobs["k"] = b"\xfb\xff"
    request.branches.add().leaves.add().blobs.append(b"xyz")
    request.wrapped.value = b"\x01"
    request.next.color = pb2.COLOR_RED
    for encoding in ("protobuf", "json"):
        response = _post(probe.url + ECHO, request, encoding)
        assert response.status_code == 200, response.text
        if encoding == "json":
            answer = json_format.Parse(response.text, pb2.EchoResponse())
        else:
            answer = pb2.EchoResponse.FromString(response.content)
        assert answer.request == request


# Bodies that stall: deadline_exceeded, and the connection closes


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float  # from the last byte sent to the server closing the connection


def send_and_wait_for_close(url: str, head: str, body: bytes, pause: float = 0) -> RawAnswer:
    """Sends a request head and (part of) a body on a raw socket, then reads until the server
    closes the connection; fails if it does not within 10 s."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode("ascii"))
        if pause:
            time.sleep(pause)
        sock.sendall(body)
        started = time.monotonic()
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the server did not close the connection; received {bytes(received)!r}")
        elapsed = time.monotonic() - started
    head_bytes, _, payload = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split(" ")[1]), headers, payload, elapsed)


# The operator's token of the service app below (service_url): its GetJob needs one.
OPERATOR_TOKEN = "test-operator-token-for-the-service-app"


def _head(path: str, content_length: int, keep_alive: bool = True) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/protobuf\r\n"
        f"Authorization: Bearer {OPERATOR_TOKEN}\r\n"
        f"Content-Length: {content_length}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    )


BODY_READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def slow_body_url() -> Iterator[str]:
    env = {"MCSV_TEST_BODY_READ_TIMEOUT": str(BODY_READ_TIMEOUT)}
    with asgi_server("tests.support.echo_app:app", env=env) as url:
        yield url


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The echo servers in a service app served as the services are (uvicorn), the body
    timeout from the settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "tests.support.service_process", str(port)]
    env = {
        "PYTHONPATH": str(ROOT),
        "MCSV_DATA_DIR": str(tmp_path_factory.mktemp("service")),
        "RPC_BODY_TIMEOUT_SECONDS": str(BODY_READ_TIMEOUT),
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    with serving(f"service-{port}", argv, url + "/health", env=env, ready=lambda a: a.is_success):
        yield url


def assert_stalled_answer(answer: RawAnswer) -> None:
    assert answer.status == 408, answer
    assert answer.headers["connection"].lower() == "close"
    assert answer.headers["content-type"] == "application/json"
    error = json.loads(answer.body[: int(answer.headers["content-length"])])
    assert error["code"] == "deadline_exceeded"
    timeout = f"{BODY_READ_TIMEOUT:g}s"
    assert error["meta"] == {"body_read_timeout": timeout, "body_min_rate": "16384"}
    assert BODY_READ_TIMEOUT * 0.8 < answer.elapsed < BODY_READ_TIMEOUT + 5, answer.elapsed


@pytest.mark.parametrize("sent", [b"", b"\x0a\x01"], ids=["no-body", "part-of-the-body"])
def test_a_stalled_body_is_deadline_exceeded_and_closes(slow_body_url: str, sent: bytes) -> None:
    assert_stalled_answer(send_and_wait_for_close(slow_body_url, _head(GET_JOB, 3), sent))


def test_a_stalled_body_on_a_service_app_closes(service_url: str) -> None:
    """As the services are served: service_app (observed) under internal.services.common.app.run."""
    assert_stalled_answer(send_and_wait_for_close(service_url, _head(GET_JOB, 3), b"\x0a\x01"))
    # and the service keeps serving
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    response = httpx.post(service_url + GET_JOB, headers=PROTOBUF | operator, content=b"")
    assert response.status_code == 200


def test_a_slow_body_within_the_timeout_is_served(slow_body_url: str) -> None:
    """The body arrives after a pause shorter than the timeout: the handler answers (the echo
    service: invalid_argument for a request that is neither empty nor its sample)."""
    answer = send_and_wait_for_close(
        slow_body_url,
        _head(GET_JOB, 3, keep_alive=False),
        b"\x0a\x01a",  # GetJobRequest(id="a")
        pause=BODY_READ_TIMEOUT / 5,
    )
    assert answer.status == 400, answer
    assert json.loads(answer.body)["code"] == "invalid_argument"


# The connection after an error answered before the body was read


def exchange(sock: socket.socket, head: str, body: bytes, pause: float = 0.05) -> RawAnswer:
    """One request on an open connection, its body sent a moment after its head (so that the
    app answers before the server has the body); reads exactly one answer."""
    sock.sendall(head.encode("ascii"))
    time.sleep(pause)
    sock.sendall(body)
    started = time.monotonic()
    received = bytearray()
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {bytes(received)!r}"
        received += chunk
    head_bytes, _, payload = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(payload) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of an answer"
        payload += chunk
    return RawAnswer(int(status_line.split(" ")[1]), headers, payload, time.monotonic() - started)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/twirp/mcsv.v1.JobService/NoSuchMethod", "application/json"),
        (GET_JOB, "text/plain"),
    ],
    ids=["unknown-method", "unknown-content-type"],
)
def test_the_connection_serves_on_after_a_bad_route(
    echo_url: str, path: str, content_type: str
) -> None:
    address = urlsplit(echo_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        body = b"{" + b" " * 30_000 + b"}"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        first = exchange(sock, head, body)
        assert first.status == 404
        assert "connection" not in first.headers
        second = exchange(sock, _head(GET_JOB, 0), b"")
        assert second.status == 200


def test_a_large_unread_body_closes_the_connection(echo_url: str) -> None:
    """Over what is read and dropped (64 KiB): the answer closes the connection at once. (Only
    the head is sent: a server closing on unread bytes would reset the connection.)"""
    head = (
        "POST /twirp/mcsv.v1.JobService/NoSuchMethod HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    answer = send_and_wait_for_close(echo_url, head, b"")
    assert answer.status == 404
    assert answer.headers["connection"].lower() == "close"
    assert answer.elapsed < 5


def test_a_connection_idle_longer_than_the_clients_keep_it_still_serves(service_url: str) -> None:
    """A service keeps an idle connection open far longer than the generated clients reuse one
    (KEEPALIVE_SECONDS), and longer than uvicorn's own 5 s: a client that picks a pooled
    connection just before retiring it, and gets round to sending late, is still answered."""
    address = urlsplit(service_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        assert exchange(sock, _head(GET_JOB, 0), b"").status == 200
        time.sleep(KEEPALIVE_SECONDS + 2)
        assert exchange(sock, _head(GET_JOB, 0), b"").status == 200

"""Hostile input to every RPC of every service, sent over the wire as an outsider would:
random bytes, truncated messages, mistyped JSON, unknown enum values, huge strings and
numbers, bad UTF-8, wrong content types and stalled bodies. Every answer must be 200 or a
typed Twirp 4xx (never a 5xx, never a hang), and every service still serves afterwards. Each
request carries a credential the RPC admits, so that it reaches the handler."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcsv.v1 import client_pb2, email_pb2, image_pb2, job_pb2, user_pb2

from internal.supervisor import System
from tests.e2e.system import whole_system
from tests.support.credentials import allowed_headers

pytestmark = pytest.mark.slow

# The Twirp codes that answer with a 4xx status: the only errors hostile input may cause.
CLIENT_ERROR_CODES = {
    "canceled", "invalid_argument", "malformed", "deadline_exceeded", "not_found",
    "bad_route", "already_exists", "permission_denied", "unauthenticated",
    "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
}  # fmt: skip
BODY_TIMEOUT_SECONDS = 1.0
# Any answer slower than this is a hang (the slowest honest RPC here takes well under 1 s).
HANG_SECONDS = 20.0


@dataclass(frozen=True)
class Rpc:
    service: str  # the process that serves it, e.g. "user_svc"
    path: str  # /twirp/mcsv.v1.UserService/CreateUser
    request: descriptor.Descriptor

    def __str__(self) -> str:
        return self.path


def _rpcs() -> list[Rpc]:
    found = []
    for module in (client_pb2, user_pb2, job_pb2, email_pb2, image_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            process = service.name.removesuffix("Service").lower() + "_svc"
            for method in service.methods:
                found.append(
                    Rpc(process, f"/twirp/{service.full_name}/{method.name}", method.input_type)
                )
    return found


RPCS = _rpcs()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whole_system(
        tmp_path_factory.mktemp("fuzz"), RPC_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS)
    ) as running_system:
        yield running_system


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=HANG_SECONDS) as client:
        yield client


def _post(
    http: httpx.Client, system: System, rpc: Rpc, body: bytes, content_type: str | None
) -> None:
    headers = allowed_headers(system.settings, rpc.path.removeprefix("/twirp/"))
    if content_type is not None:
        headers["Content-Type"] = content_type
    url = system.settings.url(rpc.service) + rpc.path
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        pytest.fail(f"{rpc} hung for {HANG_SECONDS} s on {body[:80]!r} ({content_type})")
    if response.status_code == 200:
        return
    assert 400 <= response.status_code < 500, (
        f"{rpc} answered {response.status_code} {response.text[:300]} to {body[:120]!r}"
        f" ({content_type})"
    )
    error = response.json()
    assert error["code"] in CLIENT_ERROR_CODES, (rpc.path, error)
    assert isinstance(error["msg"], str)


# -- strategies: values of the right type with hostile contents, and of the wrong type -------

HUGE_NUMBERS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -1, 2**31, -(2**31) - 1])
HOSTILE_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "x" * 200_000,
            "http://127.0.0.1/\r\nX-Injected: 1",
            "http://example.com/a b",
            "ftp://user@host/../../etc/passwd",
            "file:///etc/passwd",
            "\x00\x01\x02",
            "99999999999999999999999999999999",
            "-1",
            "NaN",
            "\ud800",  # a lone surrogate: not encodable as UTF-8
        ]
    ),
)
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_NUMBERS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.just([1, "two", None]),
    st.just({"nested": {"deep": [1]}}),
    HOSTILE_STRINGS,
)


def _nested(field: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum(field: descriptor.FieldDescriptor) -> descriptor.EnumDescriptor:
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def _json_value(field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == field.TYPE_MESSAGE:
        if _nested(field).full_name == "google.protobuf.Timestamp":
            right: st.SearchStrategy[Any] = st.sampled_from(
                ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "x"]
            )
        elif _nested(field).full_name == "google.protobuf.Duration":
            right = st.sampled_from(["1s", "-315576000001s", "1e30s", "s"])
        elif depth >= 2:
            right = st.just({})
        else:
            right = _json_object(_nested(field), depth + 1)
    elif kind == field.TYPE_ENUM:
        names = [value.name for value in _enum(field).values]
        right = st.one_of(
            st.sampled_from(names), st.integers(-5, 1_000), st.just("NOT_A_VALUE"), HUGE_NUMBERS
        )
    elif kind == field.TYPE_BYTES:
        right = st.sampled_from(["", "AAAA", "not base64!", "QUJD=", "////", "a" * 3])
    elif kind == field.TYPE_STRING:
        right = HOSTILE_STRINGS
    elif kind == field.TYPE_BOOL:
        right = st.booleans()
    elif kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        right = st.one_of(st.floats(), st.sampled_from(["NaN", "Infinity", "1e400"]))
    else:  # the integer types, int64 as strings too
        right = st.one_of(st.integers(-(2**70), 2**70), HUGE_NUMBERS.map(str))
    value = st.one_of(right, right, right, WRONG_TYPES)
    is_map = kind == field.TYPE_MESSAGE and _nested(field).GetOptions().map_entry
    if field.is_repeated and is_map:
        return st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8)), WRONG_TYPES)
    if field.is_repeated:
        return st.one_of(st.lists(right, max_size=3), WRONG_TYPES)
    return value


def _json_object(message: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    fields = {
        field.name: _json_value(field, depth)
        for field in message.fields
        if field.type != field.TYPE_MESSAGE or _nested(field).full_name != message.full_name
    }
    return st.fixed_dictionaries({}, optional=fields)


def _proto_value(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == field.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in _enum(field).values]),
                         st.integers(-(2**31), 2**31 - 1))  # fmt: skip
    if kind == field.TYPE_STRING:
        return st.one_of(st.text(max_size=30), st.just("x" * 100_000),
                         st.just("http://127.0.0.1/\r\n"))  # fmt: skip
    if kind == field.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == field.TYPE_BOOL:
        return st.booleans()
    if kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        return st.floats(allow_nan=True, width=32 if kind == field.TYPE_FLOAT else 64)
    if kind in (field.TYPE_UINT32, field.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (field.TYPE_UINT64, field.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(-(2**63), 2**63 - 1)


@st.composite
def _proto_message(draw: st.DrawFn, message: descriptor.Descriptor, depth: int = 0) -> Message:
    built = message_factory.GetMessageClass(message)()
    for field in message.fields:
        if not draw(st.booleans()):
            continue
        if field.type == field.TYPE_MESSAGE:
            if field.is_repeated or depth >= 2:
                continue
            nested = _nested(field)
            if nested.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
                target = getattr(built, field.name)
                target.seconds = draw(st.integers(-(2**62), 2**62))
                target.nanos = draw(st.integers(-(2**31), 2**31 - 1))
            else:
                getattr(built, field.name).CopyFrom(draw(_proto_message(nested, depth + 1)))
        elif field.is_repeated:
            getattr(built, field.name).extend(draw(st.lists(_proto_value(field), max_size=3)))
        else:
            setattr(built, field.name, draw(_proto_value(field)))
    return built


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _bad_utf8(rpc: Rpc) -> bytes:
    """A length-delimited value of invalid UTF-8 for each string field of the request."""
    body = b""
    for field in rpc.request.fields:
        if field.type == field.TYPE_STRING:
            body += _varint(field.number << 3 | 2) + _varint(2) + b"\xff\xfe"
    return body or b"\x0a\x02\xff\xfe"


RPC = st.sampled_from(RPCS)
PROTOBUF = "application/protobuf"
FUZZ = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(rpc=RPC, data=st.data())
def test_random_and_truncated_protobuf_gets_200_or_a_typed_4xx(
    system: System, http: httpx.Client, rpc: Rpc, data: st.DataObject
) -> None:
    choice = data.draw(st.sampled_from(["random", "truncated", "hostile", "bad_utf8"]))
    if choice == "random":
        body = data.draw(st.binary(max_size=256))
    elif choice == "bad_utf8":
        body = _bad_utf8(rpc)
    else:
        whole = data.draw(_proto_message(rpc.request)).SerializeToString()
        cut = data.draw(st.integers(0, max(0, len(whole) - 1)))
        body = whole[:cut] if choice == "truncated" else whole
    _post(http, system, rpc, body, PROTOBUF)


@FUZZ
@given(rpc=RPC, data=st.data())
def test_mistyped_json_gets_200_or_a_typed_4xx(
    system: System, http: httpx.Client, rpc: Rpc, data: st.DataObject
) -> None:
    choice = data.draw(st.sampled_from(["object", "object", "object", "not_an_object", "raw"]))
    if choice == "object":
        text = json.dumps(data.draw(_json_object(rpc.request)))
        body = text.encode("utf-8", "surrogatepass")
    elif choice == "not_an_object":
        body = json.dumps(data.draw(WRONG_TYPES)).encode("utf-8", "surrogatepass")
    else:
        body = data.draw(st.sampled_from([b"{", b"\xff\xfe{}", b'{"a":', b"[]" * 1000, b""]))
    _post(http, system, rpc, body, "application/json")


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    rpc=RPC,
    content_type=st.one_of(
        st.none(),
        st.sampled_from(
            ["text/plain", "application/xml", "application/json+x", "multipart/form-data", "*/*",
             "application/protobuf;;;charset", "APPLICATION/JSON; charset=utf-8"]
        ),
    ),
    body=st.sampled_from([b"", b"{}", b"\x08\x01", b"<x/>"]),
)  # fmt: skip
def test_wrong_content_types_get_a_typed_4xx(
    system: System, http: httpx.Client, rpc: Rpc, content_type: str | None, body: bytes
) -> None:
    _post(http, system, rpc, body, content_type)


@pytest.mark.parametrize("service", ["user_svc", "job_svc", "email_svc", "image_svc"])
def test_a_stalled_body_gets_a_timeout_answer_and_a_closed_connection(
    system: System, service: str
) -> None:
    rpc = next(rpc for rpc in RPCS if rpc.service == service)
    url = httpx.URL(system.settings.url(service))
    credential = "".join(
        f"{name}: {value}\r\n"
        for name, value in allowed_headers(
            system.settings, rpc.path.removeprefix("/twirp/")
        ).items()
    )
    with socket.create_connection((url.host, url.port), timeout=HANG_SECONDS) as sock:
        sock.sendall(
            f"POST {rpc.path} HTTP/1.1\r\nHost: {url.host}\r\n{credential}"
            "Content-Type: application/json\r\nContent-Length: 3\r\n\r\n{}".encode()
        )
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
        waited = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 408 ", answer[:300]
    assert b'"code":"deadline_exceeded"' in answer.replace(b" ", b"")
    assert waited < HANG_SECONDS


def test_every_service_still_serves_after_the_fuzzing(system: System, http: httpx.Client) -> None:
    for service in {rpc.service for rpc in RPCS}:
        assert http.get(system.settings.url(service) + "/ready").status_code == 200, service
    system.check_alive()

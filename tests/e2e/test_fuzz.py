"""Hostile input to every RPC of every service, sent over the wire as an outsider would:
random bytes, truncated messages, mistyped JSON, unknown enum values, huge strings and
numbers, bad UTF-8, wrong content types and stalled bodies. Every answer must be 200 or a
typed Twirp 4xx (never a 5xx, never a hang), and every service still serves afterwards. Each
request carries a credential the RPC admits, so that it reaches the handler."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcsv.v1 import client_pb2, common_pb2, email_pb2, image_pb2, job_pb2, user_pb2
from mcsv.v1.job_twirp import JobServiceClient

from internal import storage
from internal.supervisor import System
from tests.e2e.system import peer, whole_system
from tests.support.credentials import allowed_headers

pytestmark = pytest.mark.slow

# The Twirp codes that answer with a 4xx status: the only errors hostile input may cause.
CLIENT_ERROR_CODES = {
    "canceled", "invalid_argument", "malformed", "deadline_exceeded", "not_found",
    "bad_route", "already_exists", "permission_denied", "unauthenticated",
    "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
}  # fmt: skip
BODY_TIMEOUT_SECONDS = 1.0
MAX_UPLOAD_BYTES = 1024 * 1024  # user_svc's storage takes PUTs of up to 4 times this
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
        tmp_path_factory.mktemp("fuzz"),
        RPC_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS),
        MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
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
    if content_type is not None and not content_type.isprintable():
        return _post_raw(system, rpc, body, content_type)  # httpx will not send it
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


def _post_raw(system: System, rpc: Rpc, body: bytes, content_type: str) -> None:
    """A POST with a Content-Type that is not a valid HTTP header value (a control character),
    over a socket. That is not valid HTTP: the HTTP server answers 400 itself, before any
    Twirp code runs (as Go's net/http does), and closes the connection; or it is a typed
    Twirp 4xx. Never a 5xx, never a hang."""
    url = httpx.URL(system.settings.url(rpc.service))
    assert url.port is not None
    credential = "".join(
        f"{name}: {value}\r\n"
        for name, value in allowed_headers(
            system.settings, rpc.path.removeprefix("/twirp/")
        ).items()
    )
    head = (
        f"POST {rpc.path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nConnection: close\r\n"
        f"{credential}"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    answer = b""
    with socket.create_connection((url.host, url.port), timeout=HANG_SECONDS) as sock:
        sock.sendall(head.encode("latin-1") + body)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"{rpc} hung for {HANG_SECONDS} s with Content-Type {content_type!r}")
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert 400 <= status < 500, (rpc.path, content_type, answer[:300])
    answer_head, _, payload = rest.partition(b"\r\n\r\n")
    if b"content-type: application/json" in answer_head.lower():  # a Twirp error: typed
        assert json.loads(payload)["code"] in CLIENT_ERROR_CODES, (rpc.path, payload)
    else:  # the HTTP server's own refusal (uvicorn: "Invalid HTTP request received.")
        assert status == 400, (rpc.path, answer[:300])


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
            base64.urlsafe_b64encode(b"9" * 30).decode(),  # a page token far past any row
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


@pytest.mark.parametrize(
    "content_type", ["application/protobuf; charset=\x00", "text/\x01", "\x7f"]
)
def test_a_content_type_that_is_not_valid_http_gets_a_400(
    system: System, http: httpx.Client, content_type: str
) -> None:
    for service in sorted({rpc.service for rpc in RPCS}):
        rpc = next(rpc for rpc in RPCS if rpc.service == service)
        _post(http, system, rpc, b"{}", content_type)


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
    assert status_line.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b'"code":"deadline_exceeded"' in answer.replace(b" ", b"")
    assert waited < HANG_SECONDS


# -- the service-level rules, one by one: invalid_argument naming the field -------------------

M = TypeVar("M", bound=Message)


def _with(message: M, **changes: object) -> M:
    """A copy of `message` with some fields set to other values."""
    changed = type(message)()
    changed.CopyFrom(message)
    for name, value in changes.items():
        if isinstance(value, Message):
            getattr(changed, name).CopyFrom(value)
        else:
            setattr(changed, name, value)
    return changed


def _refused(
    http: httpx.Client, system: System, path: str, request: Message, argument: str
) -> None:
    """Sends `request` (as protobuf, which carries any value) to the RPC at `path` and expects
    invalid_argument naming `argument` in its meta and its message."""
    rpc = next(rpc for rpc in RPCS if rpc.path == path)
    response = http.post(
        system.settings.url(rpc.service) + rpc.path,
        content=request.SerializeToString(),
        headers={
            "Content-Type": PROTOBUF,
            **allowed_headers(system.settings, rpc.path.removeprefix("/twirp/")),
        },
    )
    assert response.status_code == 400, (path, argument, response.status_code, response.text)
    error = response.json()
    assert error["code"] == "invalid_argument", (path, error)
    assert error["meta"].get("argument") == argument, (path, error)
    assert error["msg"].startswith(f"{argument}:"), (path, error)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


LIST_RPCS: dict[str, Callable[..., Message]] = {
    "/twirp/mcsv.v1.JobService/ListJobs": job_pb2.ListJobsRequest,
    "/twirp/mcsv.v1.EmailService/ListEmails": email_pb2.ListEmailsRequest,
    "/twirp/mcsv.v1.ClientService/ListNotifications": client_pb2.ListNotificationsRequest,
}
BAD_PAGE_TOKENS = [
    _b64("9" * 30),  # once an OverflowError in the database, a 500
    _b64(str(2**63)),
    _b64(str(2**64 + 5)),
    _b64("-1"),
    _b64("007"),
    _b64(" 5"),
    _b64("1e3"),
    _b64("\u0663"),  # ARABIC-INDIC DIGIT THREE: a digit to int(), not a token
    "NQ",  # "5" without its padding
    "not base64!",
    "\u00e9t\u00e9",
    "A" * 100_000,
]


@pytest.mark.parametrize("path", sorted(LIST_RPCS))
@pytest.mark.parametrize("token", BAD_PAGE_TOKENS, ids=range(len(BAD_PAGE_TOKENS)))
def test_a_bad_page_token_is_invalid_argument_naming_it(
    system: System, http: httpx.Client, path: str, token: str
) -> None:
    _refused(http, system, path, LIST_RPCS[path](page_token=token), "page_token")


def _storage_origin(system: System) -> str:
    settings = system.settings
    return storage.storage_origin(settings.storage_url, public_url=settings.storage_public_url)


def _requests_with_a_url(origin: str, bad: str) -> list[tuple[str, Message, str]]:
    """Every request that carries a URL, with `bad` in one URL field, and that field's name;
    the other fields are fine (URLs point at the storage at `origin`)."""
    good = f"{origin}/storage/pdfs/x.pdf"
    succeeded = common_pb2.OUTCOME_SUCCEEDED
    args = job_pb2.ConversionJobArgs(
        conversion_id="c-bad-url", user_id="u", user_email="u@example.com",
        source_url=good, pdf_upload_url=good, pdf_download_url=good,
    )  # fmt: skip
    report = common_pb2.ConversionReport(conversion_id="c", outcome=succeeded, pdf_url=bad)
    convert = image_pb2.ConvertToPdfRequest(  # this conversion's PDF: pdfs/<id>.pdf
        conversion_id="x", source_url=good, pdf_upload_url=good
    )
    email = email_pb2.DeliverEmailRequest(
        idempotency_key="k-bad-url", user_id="u", recipient="u@example.com",
        template=common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE,
        variables={"pdf_url": bad, "filename": "a.png"},
    )  # fmt: skip
    email_args = job_pb2.EmailJobArgs(
        idempotency_key="k-bad-url", user_id="u", recipient="u@example.com",
        template=common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE,
        variables={"pdf_url": bad, "filename": "a.png"},
    )  # fmt: skip
    image, jobs = "/twirp/mcsv.v1.ImageService/", "/twirp/mcsv.v1.JobService/"
    return [
        (image + "ConvertToPdf", _with(convert, source_url=bad), "source_url"),
        (image + "ConvertToPdf", _with(convert, pdf_upload_url=bad), "pdf_upload_url"),
        *[
            (
                jobs + "EnqueueConversion",
                job_pb2.EnqueueConversionRequest(args=_with(args, **{field: bad})),
                f"args.{field}",
            )
            # pdf_upload_url is no longer carried: EnqueueConversion clears it
            for field in ("source_url", "pdf_download_url")
        ],
        (
            "/twirp/mcsv.v1.UserService/ConversionComplete",
            user_pb2.ConversionCompleteRequest(report=report),
            "report.pdf_url",
        ),
        (
            "/twirp/mcsv.v1.ClientService/ReceiveNotification",
            client_pb2.ReceiveNotificationRequest(notification_id="n", conversion_finished=report),
            "conversion_finished.pdf_url",
        ),
        ("/twirp/mcsv.v1.EmailService/DeliverEmail", email, "variables"),
        (jobs + "EnqueueEmail", job_pb2.EnqueueEmailRequest(args=email_args), "args.variables"),
    ]


BAD_URL_ENDINGS = [
    "/storage/x\r\nX-Injected: 1",  # once InvalidURL in image_svc, a 500
    "/storage/x\nSet-Cookie: a=b",
    "/storage/a b",
    "/storage/\x00",
    "/storage/\x1b[31m",
    "/storage/\x7f",
    "/storage/\tx",
    "/storage/\u0085x",  # a C1 control character
    "/storage/x\r\n",
]


@pytest.mark.parametrize("ending", BAD_URL_ENDINGS, ids=range(len(BAD_URL_ENDINGS)))
def test_a_url_with_control_characters_or_spaces_is_invalid_argument_naming_it(
    system: System, http: httpx.Client, ending: str
) -> None:
    origin = _storage_origin(system)
    for bad in (origin + ending, " " + origin + ending):
        for path, request, argument in _requests_with_a_url(origin, bad):
            _refused(http, system, path, request, argument)


def test_a_malformed_url_is_invalid_argument_naming_it(system: System, http: httpx.Client) -> None:
    origin = _storage_origin(system)
    for bad in ("http://[::1/x", f"{origin}:99999/x", "javascript:alert(1)", "http:///x"):
        for path, request, argument in _requests_with_a_url(origin, bad):
            if "ImageService" not in path:  # there, first of all not the storage (see e2e)
                _refused(http, system, path, request, argument)


def _total_jobs(system: System) -> int:
    with peer(system.settings, JobServiceClient) as jobs:
        queues = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
    states = ("available", "scheduled", "executing", "retryable", "completed", "discarded",
              "cancelled")  # fmt: skip
    return sum(getattr(queue, state) for queue in queues for state in states)


def test_unspecified_required_values_and_undeliverable_job_args_are_refused(
    system: System, http: httpx.Client
) -> None:
    """UNSPECIFIED where the contract requires a value, and job args that no attempt could
    carry out (a poison job): invalid_argument naming the field, and no job is created."""
    email = job_pb2.EmailJobArgs(
        idempotency_key="k-refused", user_id="u", user_name="U", recipient="u@example.com",
        template=common_pb2.EMAIL_TEMPLATE_WELCOME,
    )  # fmt: skip
    good = f"{_storage_origin(system)}/storage/x"
    conversion = job_pb2.ConversionJobArgs(
        conversion_id="c-refused", user_id="u", user_email="u@example.com",
        source_url=good, pdf_upload_url=good, pdf_download_url=good,
    )  # fmt: skip
    too_late = _with(conversion)
    too_late.pdf_download_url_expires_at.seconds = 2**62
    jobs, users = "/twirp/mcsv.v1.JobService/", "/twirp/mcsv.v1.UserService/"
    receive = "/twirp/mcsv.v1.ClientService/ReceiveNotification"
    notification = client_pb2.ReceiveNotificationRequest(notification_id="n-refused")
    before = _total_jobs(system)
    cases: list[tuple[str, Message, str]] = [
        (
            "/twirp/mcsv.v1.EmailService/DeliverEmail",
            email_pb2.DeliverEmailRequest(idempotency_key="k", recipient="u@example.com"),
            "template",
        ),
        (jobs + "EnqueueEmail", job_pb2.EnqueueEmailRequest(args=_with(email, template=0)),
         "args.template"),
        (jobs + "EnqueueEmail",
         job_pb2.EnqueueEmailRequest(args=_with(email, recipient="nobody")), "args.recipient"),
        (jobs + "EnqueueEmail", job_pb2.EnqueueEmailRequest(args=_with(email, user_id="")),
         "args.user_id"),
        (jobs + "EnqueueEmail",  # the notification template needs a title and a body
         job_pb2.EnqueueEmailRequest(args=_with(email, template=2)), "args.variables"),
        (jobs + "EnqueueConversion",
         job_pb2.EnqueueConversionRequest(args=_with(conversion, user_email="nobody")),
         "args.user_email"),
        (jobs + "EnqueueConversion", job_pb2.EnqueueConversionRequest(args=too_late),
         "args.pdf_download_url_expires_at"),
        (users + "NotifyEmailDelivered",
         user_pb2.NotifyEmailDeliveredRequest(
             delivery=common_pb2.EmailDelivery(user_id="u", job_id="j")),
         "delivery.outcome"),
        (users + "ConversionComplete",
         user_pb2.ConversionCompleteRequest(
             report=common_pb2.ConversionReport(conversion_id="c")),
         "report.outcome"),
        (receive, _with(notification, email_delivered=common_pb2.EmailDelivery(user_id="u")),
         "email_delivered.outcome"),
        (receive,
         _with(notification,
               conversion_finished=common_pb2.ConversionReport(conversion_id="c")),
         "conversion_finished.outcome"),
    ]  # fmt: skip
    for path, request, argument in cases:
        _refused(http, system, path, request, argument)
    assert _total_jobs(system) == before


def test_a_time_out_of_range_is_invalid_argument_naming_it(
    system: System, http: httpx.Client
) -> None:
    """Protobuf carries any seconds and nanos; a time that cannot be written as JSON must not
    be stored or relayed, or every later read of it as JSON would fail."""
    succeeded = common_pb2.OUTCOME_SUCCEEDED
    delivery = common_pb2.EmailDelivery(user_id="u", job_id="j", outcome=succeeded)
    sent = client_pb2.ReceiveNotificationRequest(notification_id="n", email_delivered=delivery)
    sent.sent_at.seconds = 2**62
    finished = _with(sent)
    finished.ClearField("sent_at")
    finished.email_delivered.finished_at.nanos = -1
    notify = user_pb2.NotifyEmailDeliveredRequest(delivery=delivery)
    notify.delivery.finished_at.seconds = -(2**40)
    report = user_pb2.ConversionCompleteRequest(
        report=common_pb2.ConversionReport(conversion_id="c", outcome=succeeded)
    )
    report.report.result.duration.seconds = 10**12
    receive = "/twirp/mcsv.v1.ClientService/ReceiveNotification"
    _refused(http, system, receive, sent, "sent_at")
    _refused(http, system, receive, finished, "email_delivered.finished_at")
    users = "/twirp/mcsv.v1.UserService/"
    _refused(http, system, users + "NotifyEmailDelivered", notify, "delivery.finished_at")
    _refused(http, system, users + "ConversionComplete", report, "report.result.duration")
    # Whatever the fuzzing got stored, every notification lists as JSON.
    url = system.settings.url("client_svc") + "/twirp/mcsv.v1.ClientService/ListNotifications"
    token = ""
    while True:
        page = http.post(
            url,
            json={"pageSize": 1000, "pageToken": token},
            headers=allowed_headers(system.settings, "mcsv.v1.ClientService/ListNotifications"),
        )
        assert page.status_code == 200, page.text[:300]
        token = page.json().get("nextPageToken", "")
        if not token:
            break


# -- the storage routes of user_svc (the file storage of the embedded default) -------------


def _storage_put_until_closed(system: System, head: dict[str, str], body: bytes) -> bytes:
    """Sends a presigned PUT's head and `body` to user_svc's storage, then nothing more; what
    the server answered once it closed the connection (keeping it open fails the test)."""
    settings = system.settings
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    url = httpx.URL(store.presign_put("pdfs/fuzz.pdf", timedelta(minutes=5), "application/pdf"))
    lines = [
        f"PUT {url.raw_path.decode()} HTTP/1.1",
        f"Host: {url.host}:{url.port}",
        "Content-Type: application/pdf",
        *(f"{name}: {value}" for name, value in head.items()),
    ]
    assert url.port is not None
    with socket.create_connection((url.host, url.port), timeout=HANG_SECONDS) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"the storage kept the connection open after {answer[:300]!r}")
        except ConnectionResetError:
            pass  # closed with part of the body unread: the answer came before
    return answer


def test_a_storage_put_too_large_while_streaming_gets_413_and_a_closed_connection(
    system: System,
) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    count = MAX_UPLOAD_BYTES * 4 // 65536 + 16  # past the limit (4 uploads' worth)
    answer = _storage_put_until_closed(system, {"Transfer-Encoding": "chunked"}, chunk * count)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]


def test_a_storage_put_whose_body_stalls_gets_408_and_a_closed_connection(
    system: System,
) -> None:
    answer = _storage_put_until_closed(system, {"Content-Length": "1000"}, b"%PDF")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]


def test_every_service_still_serves_after_the_fuzzing(system: System, http: httpx.Client) -> None:
    for service in {rpc.service for rpc in RPCS}:
        assert http.get(system.settings.url(service) + "/ready").status_code == 200, service
    system.check_alive()

"""The server side of the Twirp v7 wire protocol, checked with plain HTTP requests against
TwirpApp on a real uvicorn server, as the reference Go server behaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from mcsv.twirp import ErrorCode
from mcsv.v1 import job_pb2, user_pb2

from tests.support.samples import sample
from tests.support.servers import asgi_server

PROTOBUF = {"Content-Type": "application/protobuf"}
JSON = {"Content-Type": "application/json"}
GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"
CREATE_USER = "/twirp/mcsv.v1.UserService/CreateUser"


@pytest.fixture(scope="module")
def http(echo_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=echo_url) as client:
        yield client


def assert_twirp_error(response: httpx.Response, code: ErrorCode, **meta: str) -> dict[str, Any]:
    assert response.status_code == code.http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code.value
    assert isinstance(body["msg"], str) and body["msg"]
    for key, value in meta.items():
        assert body["meta"][key] == value
    assert all(isinstance(v, str) for v in body.get("meta", {}).values())
    return dict(body)


# Routing


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_only_post_is_routed(http: httpx.Client, method: str) -> None:
    response = http.request(method, CREATE_USER, headers=JSON, content=b"{}")
    body = assert_twirp_error(
        response, ErrorCode.BAD_ROUTE, twirp_invalid_route=f"{method} {CREATE_USER}"
    )
    assert "only POST is allowed" in body["msg"]


@pytest.mark.parametrize(
    "path",
    [
        "/twirp/mcsv.v1.UserService/NoSuchMethod",
        "/twirp/mcsv.v1.NoSuchService/CreateUser",
        "/twirp/mcsv.v2.UserService/CreateUser",
        "/other-prefix/mcsv.v1.UserService/CreateUser",
        "/mcsv.v1.UserService/CreateUser",
        "/twirp/mcsv.v1.UserService/createUser",
        "/twirp/mcsv.v1.UserService/CreateUser/extra",
    ],
)
def test_unknown_routes_are_bad_route_404(http: httpx.Client, path: str) -> None:
    response = http.post(path, headers=JSON, content=b"{}")
    assert_twirp_error(response, ErrorCode.BAD_ROUTE, twirp_invalid_route=f"POST {path}")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_an_unknown_content_type_is_bad_route(http: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post(CREATE_USER, headers=headers, content=b"{}")
    body = assert_twirp_error(
        response, ErrorCode.BAD_ROUTE, twirp_invalid_route=f"POST {CREATE_USER}"
    )
    assert "Content-Type" in body["msg"]


@pytest.mark.parametrize(
    ("content_type", "answered"),
    [
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSON", "application/json"),
        ("application/protobuf; proto=mcsv.v1.GetJobRequest", "application/protobuf"),
    ],
)
def test_content_type_parameters_and_case_are_ignored(
    http: httpx.Client, content_type: str, answered: str
) -> None:
    body = b"{}" if "json" in answered else b""
    response = http.post(GET_JOB, headers={"Content-Type": content_type}, content=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == answered


# Decoding requests


def test_an_empty_protobuf_body_is_the_empty_message(http: httpx.Client) -> None:
    response = http.post(GET_JOB, headers=PROTOBUF, content=b"")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/protobuf"
    assert job_pb2.GetJobResponse.FromString(response.content) == job_pb2.GetJobResponse()


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (PROTOBUF, b"\xff\xff\xff"),
        (PROTOBUF, b"\x0a\x05ab"),  # a length-delimited field running past the end
        (JSON, b""),
        (JSON, b"{not json"),
        (JSON, b'{"id": 12}'),  # a number where a string belongs
        (JSON, b'{"id": "\xff"}'),  # not UTF-8
        (JSON, b"[]"),
    ],
)
def test_undecodable_bodies_are_malformed_400(
    http: httpx.Client, headers: dict[str, str], body: bytes
) -> None:
    assert_twirp_error(http.post(GET_JOB, headers=headers, content=body), ErrorCode.MALFORMED)


def test_json_input_ignores_unknown_fields_and_accepts_camel_case(http: httpx.Client) -> None:
    camel = json.loads(json_format.MessageToJson(sample(user_pb2.CreateUserRequest)))
    camel["someFieldFromTheFuture"] = {"nested": [1, 2]}
    response = http.post(CREATE_USER, headers=JSON, json=camel)
    assert response.status_code == 200, response.text
    assert json_format.Parse(response.text, user_pb2.CreateUserResponse()) == sample(
        user_pb2.CreateUserResponse
    )


# Encoding responses


def test_json_output_uses_proto_names_int64_strings_and_enum_names(http: httpx.Client) -> None:
    request = json_format.MessageToDict(
        sample(job_pb2.GetJobRequest), preserving_proto_field_name=True
    )
    response = http.post(GET_JOB, headers=JSON, json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    job = body["job"]
    assert {"max_attempts", "inserted_at", "scheduled_at"} <= job.keys()
    assert "maxAttempts" not in job
    assert isinstance(body["events"][0]["sequence"], str)  # int64
    assert body["events"][0]["sequence"] == str(sample(job_pb2.GetJobResponse).events[0].sequence)
    assert job["state"].startswith("JOB_STATE_")  # enums by name
    assert job["inserted_at"].endswith("Z")  # Timestamp in RFC 3339


def test_json_output_emits_zero_values_and_null_messages(http: httpx.Client) -> None:
    response = http.post("/twirp/mcsv.v1.JobService/ListJobs", headers=JSON, content=b"{}")
    assert response.json() == {"jobs": [], "next_page_token": ""}
    response = http.post(GET_JOB, headers=JSON, content=b"{}")
    assert response.json() == {"job": None, "events": []}


# Errors


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
@pytest.mark.parametrize("headers", [PROTOBUF, JSON], ids=["protobuf", "json"])
def test_errors_are_json_with_the_status_of_their_code(
    http: httpx.Client, code: ErrorCode, headers: dict[str, str]
) -> None:
    body = b"" if headers is PROTOBUF else b"{}"
    response = http.post(GET_JOB, headers={**headers, "x-test-raise": code.value}, content=body)
    error = assert_twirp_error(response, code, answer="42")  # raised with an int meta value
    assert error == {
        "code": code.value,
        "msg": f"raised {code} on purpose",
        "meta": {"answer": "42", "code": code.value},
    }


def test_data_loss_is_spelled_as_the_reference_implementation_does() -> None:
    assert ErrorCode.DATA_LOSS.value == "data_loss"
    assert ErrorCode.DATA_LOSS.http_status == 500


def test_an_unexpected_exception_is_internal_and_the_server_keeps_serving(
    http: httpx.Client,
) -> None:
    response = http.post(GET_JOB, headers={**JSON, "x-test-crash": "1"}, content=b"{}")
    body = assert_twirp_error(response, ErrorCode.INTERNAL)
    assert "crashed on purpose" not in body["msg"]  # no internals leak to the caller
    assert http.post(GET_JOB, headers=JSON, content=b"{}").status_code == 200


@pytest.mark.parametrize("path", [GET_JOB, CREATE_USER], ids=["async", "sync"])
def test_a_handler_returning_the_wrong_type_is_internal(http: httpx.Client, path: str) -> None:
    response = http.post(path, headers={**JSON, "x-test-wrong-type": "1"}, content=b"{}")
    body = assert_twirp_error(response, ErrorCode.INTERNAL)
    assert "mcsv.v1." in body["msg"]


# Body size


@pytest.fixture(scope="module")
def small_limit_url() -> Iterator[str]:
    with asgi_server("tests.support.echo_app:app", env={"MCSV_TEST_MAX_BODY_BYTES": "1024"}) as url:
        yield url


def test_a_body_over_the_limit_is_refused_by_content_length(small_limit_url: str) -> None:
    response = httpx.post(small_limit_url + GET_JOB, headers=PROTOBUF, content=b"\0" * 2048)
    body = assert_twirp_error(response, ErrorCode.INVALID_ARGUMENT, max_body_bytes="1024")
    assert "1024 bytes" in body["msg"]


def test_a_streamed_body_over_the_limit_is_refused(small_limit_url: str) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check up front
        for _ in range(8):
            yield b"\0" * 512

    response = httpx.post(small_limit_url + GET_JOB, headers=PROTOBUF, content=chunks())
    assert_twirp_error(response, ErrorCode.INVALID_ARGUMENT, max_body_bytes="1024")
    assert httpx.post(small_limit_url + GET_JOB, headers=PROTOBUF, content=b"").status_code == 200

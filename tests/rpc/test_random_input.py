"""Property: whatever bytes arrive as a request body, the generated runtime's TwirpApp answers
200 or a typed Twirp 4xx (malformed, invalid_argument), never 500 and never a non-Twirp answer.

Bodies are random bytes, truncations of a valid encoding, and valid encodings with bytes
flipped, in protobuf and JSON, to every RPC of the five mcsv services (tests/support/echo_app.py
on uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcsv.twirp import ErrorCode, codec

from tests.rpc.catalog import RPCS, Rpc
from tests.support.samples import sample

TYPED_4XX = {ErrorCode.MALFORMED, ErrorCode.INVALID_ARGUMENT}
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def http(echo_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=echo_url, timeout=10) as client:
        yield client


def encoded_sample(rpc: Rpc, content_type: str) -> bytes:
    return codec.encode(sample(rpc.request_type), content_type)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[Rpc, str, bytes]:
    rpc = draw(st.sampled_from(RPCS))
    content_type = draw(st.sampled_from(codec.CONTENT_TYPES))
    valid = encoded_sample(rpc, content_type)
    kind = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if kind == "random":
        body = draw(st.binary(max_size=512))
    elif kind == "truncated":
        body = valid[: draw(st.integers(min_value=0, max_value=max(len(valid) - 1, 0)))]
    else:
        flipped = bytearray(valid)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            index = draw(st.integers(min_value=0, max_value=len(flipped) - 1))
            flipped[index] ^= draw(st.integers(min_value=1, max_value=255))
        body = bytes(flipped)
    return rpc, content_type, body


def assert_200_or_typed_4xx(response: httpx.Response, rpc: Rpc, content_type: str) -> None:
    if response.status_code == 200:
        assert codec.media_type(response.headers["content-type"]) == content_type
        codec.decode(response.content, rpc.response_type, content_type)
        return
    assert response.headers["content-type"] == "application/json", response.text
    code = ErrorCode(response.json()["code"])
    assert code in TYPED_4XX, response.text
    assert response.status_code == code.http_status == 400


@SETTINGS
@given(case=bodies())
def test_any_body_is_answered_200_or_a_typed_4xx(
    http: httpx.Client, case: tuple[Rpc, str, bytes]
) -> None:
    rpc, content_type, body = case
    response = http.post(rpc.path, headers={"Content-Type": content_type}, content=body)
    assert_200_or_typed_4xx(response, rpc, content_type)


@SETTINGS
@given(rpc=st.sampled_from(RPCS), text=st.text(max_size=200))
def test_any_json_text_is_answered_200_or_a_typed_4xx(
    http: httpx.Client, rpc: Rpc, text: str
) -> None:
    body = text.encode("utf-8", errors="surrogatepass")
    response = http.post(rpc.path, headers={"Content-Type": codec.JSON}, content=body)
    assert_200_or_typed_4xx(response, rpc, codec.JSON)


@SETTINGS
@given(rpc=st.sampled_from(RPCS), data=st.data())
def test_json_values_of_the_wrong_shape_are_answered_200_or_a_typed_4xx(
    http: httpx.Client, rpc: Rpc, data: st.DataObject
) -> None:
    """The sample's JSON object with each field's value replaced by arbitrary JSON."""
    as_dict = json_format.MessageToDict(sample(rpc.request_type), preserving_proto_field_name=True)
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=10,
    )
    for name in as_dict:
        if data.draw(st.booleans()):
            as_dict[name] = data.draw(json_values)
    response = http.post(rpc.path, json=as_dict)
    assert_200_or_typed_4xx(response, rpc, codec.JSON)

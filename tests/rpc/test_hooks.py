"""ServerHooks as TwirpApp tells them (tests/support/hooks_app.py on uvicorn): the steps in
order for an answer, a route error, a handler's error, a hook that rejects a request, a hook
that crashes; and what the context holds at each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import asgi_server

GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"
CREATE_USER = "/twirp/mcsv.v1.UserService/CreateUser"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with asgi_server("tests.support.hooks_app:app") as url, httpx.Client(base_url=url) as client:
        yield client


def call(
    http: httpx.Client, path: str, method: str = "POST", **headers: str
) -> tuple[httpx.Response, list[str]]:
    request_id = uuid.uuid4().hex
    response = http.request(
        method, path, headers={**JSON, "x-request-id": request_id, **headers}, content=b"{}"
    )
    steps = http.get(f"/events/{request_id}").json()
    return response, steps


@pytest.mark.parametrize("path", [GET_JOB, CREATE_USER], ids=["async", "sync"])
def test_an_answer_goes_through_every_step(http: httpx.Client, path: str) -> None:
    response, steps = call(http, path, **{"x-tag": "seen"})
    assert response.status_code == 200
    assert response.headers["x-tag"] == "seen"  # a hook may add response headers
    service_method = path.removeprefix("/twirp/")
    assert steps == [
        f"request_received:{path}",
        f"request_routed:{service_method}",
        "response_prepared",
        "response_sent:200",
    ]


def test_a_route_error_is_not_routed(http: httpx.Client) -> None:
    response, steps = call(http, GET_JOB, method="GET")
    assert response.status_code == 404
    assert steps == [f"request_received:{GET_JOB}", "error:bad_route/404", "response_sent:404"]


def test_a_handler_error_reaches_the_error_hook(http: httpx.Client) -> None:
    response, steps = call(http, GET_JOB, **{"x-test-raise": "not_found"})
    assert response.json()["code"] == "not_found"
    assert steps[-2:] == ["error:not_found/404", "response_sent:404"]
    assert "response_prepared" not in steps


@pytest.mark.parametrize("step", ["request_received", "request_routed", "response_prepared"])
def test_a_hook_may_reject_a_request(http: httpx.Client, step: str) -> None:
    response, steps = call(http, GET_JOB, **{"x-reject-at": step})
    assert response.status_code == 403
    assert response.json() == {"code": "permission_denied", "msg": f"rejected at {step}"}
    assert steps[-2:] == ["error:permission_denied/403", "response_sent:403"]


def test_a_crashing_hook_before_the_answer_is_internal(http: httpx.Client) -> None:
    response, steps = call(http, GET_JOB, **{"x-crash-at": "request_routed"})
    assert response.status_code == 500
    assert response.json()["code"] == "internal"
    assert "crashed" not in response.json()["msg"]
    assert steps[-2:] == ["error:internal/500", "response_sent:500"]


@pytest.mark.parametrize("step", ["error", "response_sent"])
def test_a_crashing_hook_after_the_answer_changes_nothing(http: httpx.Client, step: str) -> None:
    response, steps = call(http, GET_JOB, **{"x-crash-at": step, "x-test-raise": "aborted"})
    assert response.status_code == 409
    assert response.json()["code"] == "aborted"
    assert steps[-2:] == ["error:aborted/409", "response_sent:409"]

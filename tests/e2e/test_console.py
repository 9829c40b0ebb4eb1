"""The console over HTTP on the whole system (the browser tests, tests/browser, drive it in
Chromium): its pages are the operator's only; its relay of JobService answers a signed-in
operator from its own origin, refuses strangers, other origins and enqueueing, and passes
job_svc's errors through; ListConversions pages and filters conversions for the operator."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import job_pb2, user_pb2
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal.supervisor import System
from tests.e2e.system import CONVERSION, peer, succeeded, wait_for, wait_job, whole_system
from tests.e2e.test_lifecycle import convert

PROMETHEUS_URL = "http://prometheus.invalid:9090"
GRAFANA_URL = "http://grafana.invalid:3000"
FINAL = {job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_DISCARDED, job_pb2.JOB_STATE_CANCELLED}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whole_system(
        tmp_path_factory.mktemp("console"),
        workers=1,
        PROMETHEUS_URL=PROMETHEUS_URL,
        GRAFANA_URL=GRAFANA_URL,
    ) as running:
        yield running


@pytest.fixture
def operator(system: System) -> Iterator[httpx.Client]:
    """A browser signed in to the console (its session cookie)."""
    with httpx.Client(base_url=system.settings.url("console"), timeout=30) as browser:
        answer = browser.post("/console/login", data={"token": system.settings.operator_token})
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert system.settings.operator_token not in cookie
        yield browser


def relay(browser: httpx.Client, method: str, body: object, **headers: str) -> httpx.Response:
    return browser.post(f"/console/twirp/mcsv.v1.JobService/{method}", json=body, headers=headers)


def test_pages_are_the_operators_only(system: System, operator: httpx.Client) -> None:
    console = system.settings.url("console")
    for path in ("/console", "/console/jobs", "/console/conversions", "/console/emails"):
        assert httpx.get(console + path).status_code == 401, path
        assert operator.get(path).status_code == 200, path
    assert httpx.post(f"{console}/console/login", data={"token": "guess"}).status_code == 401
    overview = operator.get("/console").text
    assert f'href="{PROMETHEUS_URL}"' in overview and f'href="{GRAFANA_URL}"' in overview
    for service in ("client_svc", "user_svc", "job_svc", "email_svc", "image_svc"):
        assert f'href="{system.settings.url(service)}/docs"' in overview
    assert operator.get("/console/jobs?state=bogus").status_code == 400
    assert operator.get("/console/jobs/no-such-job").status_code == 404
    assert operator.get("/console/emails/no-such-email").status_code == 404


def test_the_relay_answers_the_operator_from_the_console_only(
    system: System, operator: httpx.Client
) -> None:
    console = system.settings.url("console")
    assert relay(operator, "GetQueueStats", {}).status_code == 200
    assert relay(operator, "GetQueueStats", {}, Origin=console).status_code == 200
    stranger = httpx.post(f"{console}/console/twirp/mcsv.v1.JobService/GetQueueStats", json={})
    assert stranger.status_code == 401 and stranger.json()["code"] == "unauthenticated"
    elsewhere = relay(operator, "RetryJob", {"id": "x"}, Origin="http://evil.example")
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "permission_denied"
    enqueue = relay(operator, "EnqueueEmail", {"args": {"recipient": "x@example.com"}})
    assert enqueue.status_code == 403 and enqueue.json()["code"] == "permission_denied"


def test_the_buttons_rpcs_reach_job_svc_and_its_errors_come_back(
    system: System, operator: httpx.Client
) -> None:
    with (
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):
        created = users.create_user(user_pb2.CreateUserRequest(name="Bo", email="bo@example.com"))
        wait_job(jobs, created.job_id, FINAL)
    retried = relay(operator, "RetryJob", {"id": created.job_id})  # completed: not retried
    assert retried.status_code == 412 and retried.json()["code"] == "failed_precondition"
    assert "COMPLETED" in retried.json()["msg"]
    missing = relay(operator, "CancelJob", {"id": "no-such-job"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    job = relay(operator, "GetJob", {"id": created.job_id}).json()
    assert job["job"]["state"] == "JOB_STATE_COMPLETED" and job["events"]


def test_list_conversions_pages_and_filters_for_the_operator(
    system: System, operator: httpx.Client
) -> None:
    with peer(system.settings, UserServiceClient) as users:
        owner = users.create_user(user_pb2.CreateUserRequest(name="Cy", email="cy@example.com"))
        made = [convert(system, users, owner.user.id, f"page-{n}.png") for n in range(3)]
        outcomes = wait_for(system, CONVERSION, {c.id for c in made})
        assert all(succeeded(n) for n in outcomes.values())
        first = users.list_conversions(
            user_pb2.ListConversionsRequest(user_id=owner.user.id, page_size=2)
        )
        assert [c.id for c in first.conversions] == [c.id for c in reversed(made)][:2]
        rest = users.list_conversions(
            user_pb2.ListConversionsRequest(
                user_id=owner.user.id, page_size=2, page_token=first.next_page_token
            )
        )
        assert [c.id for c in rest.conversions] == [made[0].id] and not rest.next_page_token
        done = users.list_conversions(
            user_pb2.ListConversionsRequest(
                user_id=owner.user.id, state=user_pb2.CONVERSION_STATE_SUCCEEDED
            )
        ).conversions
        assert len(done) == 3 and all(c.pdf_url and c.result.page_width_points for c in done)
        assert not users.list_conversions(
            user_pb2.ListConversionsRequest(
                user_id=owner.user.id, state=user_pb2.CONVERSION_STATE_FAILED
            )
        ).conversions
        with pytest.raises(TwirpError) as refused:
            users.list_conversions(user_pb2.ListConversionsRequest(page_token="nope"))
        assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    page = operator.get(f"/console/conversions?user_id={owner.user.id}")
    assert page.status_code == 200 and page.text.count("page-") == 3 and "PDF" in page.text

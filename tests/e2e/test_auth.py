"""Outsiders are refused: every RPC of every service (from the generated descriptors) called
with no credential, a malformed or forged one, an expired one, and one of a caller the
allow-list does not name, each with the right Twirp code; the forged calls of the security
review; a user sees only their own data; and the allow-list covers every RPC."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2, email_pb2, image_pb2, job_pb2, user_pb2
from mcsv.v1.user_twirp import UserServiceClient

from internal import registry
from internal.auth import OPERATOR, PUBLIC, USER, tokens
from internal.auth.policy import ALLOWED
from internal.supervisor import System
from tests.e2e.images import make_image
from tests.e2e.system import CONVERSION, wait_for, whole_system
from tests.support.credentials import service_of

pytestmark = pytest.mark.slow

RPCS = [
    f"{service.full_name}/{method.name}"
    for module in (client_pb2, user_pb2, job_pb2, email_pb2, image_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
PROTECTED = [rpc for rpc in RPCS if PUBLIC not in ALLOWED[rpc]]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whole_system(tmp_path_factory.mktemp("auth"), workers=1) as running_system:
        yield running_system


def call(system: System, rpc: str, token: str | None) -> tuple[int, str]:
    """POSTs an empty JSON request to `rpc`; the HTTP status and the Twirp code (or "")."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{system.settings.url(service_of(rpc))}/twirp/{rpc}"
    answer = httpx.post(url, content=b"{}", headers=headers, timeout=30)
    return answer.status_code, answer.json().get("code", "") if answer.status_code != 200 else ""


def test_the_allow_list_names_every_rpc_and_only_those() -> None:
    assert set(ALLOWED) == set(RPCS)
    callers = {grant for grants in ALLOWED.values() for grant in grants}
    assert callers <= {PUBLIC, OPERATOR, USER, *registry.NAMES}


@pytest.mark.parametrize("rpc", PROTECTED)
def test_no_bad_or_expired_credential_is_unauthenticated(system: System, rpc: str) -> None:
    settings = system.settings
    audience = service_of(rpc)
    caller = next(iter(sorted(registry.NAMES)))
    long_ago = time.time() - 3600
    forged = jwt.encode(
        {"iss": caller, "sub": caller, "aud": audience, "iat": int(time.time()),
         "exp": int(time.time()) + 60},
        "not-the-key-of-this-deployment-32-bytes-long", algorithm="HS256",
        headers={"kid": "service"},
    )  # fmt: skip
    bad = {
        "none": None,
        "garbage": "not-a-token",
        "forged service token": forged,
        "expired service token": tokens.service_token(settings, caller, audience, now=long_ago),
        "service token for another service": tokens.service_token(settings, caller, "nowhere_svc"),
        "expired user token": tokens.user_token(
            settings, "u-1", now=long_ago - settings.user_token_ttl_seconds
        ),
        "wrong operator token": settings.operator_token + "x",
    }
    for name, token in bad.items():
        assert call(system, rpc, token) == (401, "unauthenticated"), name


@pytest.mark.parametrize("rpc", PROTECTED)
def test_a_valid_credential_the_allow_list_does_not_name_is_permission_denied(
    system: System, rpc: str
) -> None:
    settings = system.settings
    audience = service_of(rpc)
    grants = ALLOWED[rpc]
    others: dict[str, str] = {
        name: tokens.service_token(settings, name, audience)
        for name in registry.NAMES
        if name not in grants
    }
    if OPERATOR not in grants:
        others[OPERATOR] = settings.operator_token
    if USER not in grants:
        others[USER] = tokens.user_token(settings, "u-1")
    assert others, rpc
    for name, token in others.items():
        assert call(system, rpc, token) == (403, "permission_denied"), name


def test_the_forged_calls_of_the_review_are_refused(system: System) -> None:
    """An outsider (no credential) and a user (their own API token) try the review's
    forgeries: an open mail relay, forged outcomes, others' jobs and emails."""
    users = UserServiceClient(system.settings.url("user_svc"))
    created = users.create_user(user_pb2.CreateUserRequest(name="Mallory", email="m@example.com"))
    assert created.api_token
    forgeries = [
        "mcsv.v1.EmailService/DeliverEmail",
        "mcsv.v1.JobService/EnqueueEmail",
        "mcsv.v1.UserService/ConversionComplete",
        "mcsv.v1.UserService/NotifyEmailDelivered",
        "mcsv.v1.ClientService/ReceiveNotification",
        "mcsv.v1.JobService/CancelJob",
        "mcsv.v1.JobService/RetryJob",
        "mcsv.v1.JobService/ListJobs",
        "mcsv.v1.JobService/GetJob",
        "mcsv.v1.EmailService/ListEmails",
        "mcsv.v1.EmailService/GetEmail",
        "mcsv.v1.ImageService/ConvertToPdf",
        "mcsv.v1.UserService/ListConversions",
    ]
    for rpc in forgeries:
        assert call(system, rpc, None) == (401, "unauthenticated"), rpc
        assert call(system, rpc, created.api_token) == (403, "permission_denied"), rpc
    mailbox = httpx.get(system.settings.url("email_svc") + "/mailbox", follow_redirects=False)
    assert mailbox.status_code == 401


def test_a_user_sees_only_their_own_user_and_conversions(system: System) -> None:
    public = UserServiceClient(system.settings.url("user_svc"))
    alice = public.create_user(user_pb2.CreateUserRequest(name="Alice", email="a@example.com"))
    bob = public.create_user(user_pb2.CreateUserRequest(name="Bob", email="b@example.com"))
    # A repeated sign-up gets the user, never their token.
    again = public.create_user(user_pb2.CreateUserRequest(name="Alice", email="a@example.com"))
    assert again.user.id == alice.user.id and again.api_token == ""
    as_alice = UserServiceClient(system.settings.url("user_svc"), credentials=alice.api_token)
    as_bob = UserServiceClient(system.settings.url("user_svc"), credentials=bob.api_token)
    assert as_alice.get_user(user_pb2.GetUserRequest(id=alice.user.id)).user == alice.user
    asked: list[str] = []  # credentials may be a callable, asked once per request

    def lazily() -> str:
        asked.append(alice.api_token)
        return alice.api_token

    with UserServiceClient(system.settings.url("user_svc"), credentials=lazily) as lazy:
        for _ in range(2):
            assert lazy.get_user(user_pb2.GetUserRequest(id=alice.user.id)).user == alice.user
    assert len(asked) == 2
    with pytest.raises(TwirpError) as hidden:
        as_bob.get_user(user_pb2.GetUserRequest(id=alice.user.id))
    assert hidden.value.code is ErrorCode.NOT_FOUND
    upload = user_pb2.ConvertImageRequest(
        user_id=alice.user.id, filename="a.png", image_data=make_image("png", 64, 48)
    )
    with pytest.raises(TwirpError) as denied:
        as_bob.convert_image(upload)  # in Alice's name
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    conversion = as_alice.convert_image(upload).conversion
    assert as_alice.get_conversion(user_pb2.GetConversionRequest(id=conversion.id))
    with pytest.raises(TwirpError) as hidden:
        as_bob.get_conversion(user_pb2.GetConversionRequest(id=conversion.id))
    assert hidden.value.code is ErrorCode.NOT_FOUND
    finished = wait_for(system, CONVERSION, {conversion.id})[conversion.id]
    assert finished.conversion_finished.outcome == common_pb2.OUTCOME_SUCCEEDED

"""The credentials themselves: a service token names its caller and callee and verifies only
at the callee, a cached one is renewed before it runs out, a user's token verifies as that
user, and the operator's token as the operator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from internal import config
from internal.auth import OPERATOR, USER, Principal, tokens
from internal.auth.credentials import ServiceTokens, credentials_for


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    return config.load({"MCSV_DATA_DIR": str(tmp_path), "SERVICE_TOKEN_TTL_SECONDS": "3"})


def test_the_secrets_are_generated_once_and_kept(settings: config.Settings) -> None:
    again = config.load({"MCSV_DATA_DIR": str(settings.data_dir)})
    assert again.service_token_secret == settings.service_token_secret
    assert again.operator_token == settings.operator_token
    assert len({settings.service_token_secret, settings.user_token_secret,
                settings.operator_token, settings.storage_secret}) == 4  # fmt: skip
    assert (settings.data_dir / "operator-token").stat().st_mode & 0o777 == 0o600


def test_a_service_token_verifies_only_at_its_callee(settings: config.Settings) -> None:
    token = tokens.service_token(settings, "job_svc", "email_svc")
    assert tokens.verify(settings, token, "email_svc") == Principal("service", "job_svc")
    with pytest.raises(tokens.InvalidCredential):
        tokens.verify(settings, token, "user_svc")


def test_user_and_operator_tokens(settings: config.Settings) -> None:
    assert tokens.verify(settings, tokens.user_token(settings, "u-7"), "user_svc") == Principal(
        USER, "u-7"
    )
    assert tokens.verify(settings, settings.operator_token, "job_svc").kind == OPERATOR
    expired = tokens.user_token(settings, "u-7", now=time.time() - 10**8)
    with pytest.raises(tokens.InvalidCredential):
        tokens.verify(settings, expired, "user_svc")


def test_a_cached_service_token_is_renewed_before_it_runs_out(settings: config.Settings) -> None:
    cache = ServiceTokens(settings, "user_svc")
    first = cache.token("job_svc")
    assert cache.token("job_svc") == first  # cached
    assert cache.token("client_svc") != first  # one per callee
    time.sleep(2.2)  # two thirds of the 3 s lifetime
    renewed = cache.token("job_svc")
    assert renewed != first
    assert tokens.verify(settings, renewed, "job_svc") == Principal("service", "user_svc")


def test_credentials_for_the_operator_and_for_a_service(settings: config.Settings) -> None:
    assert credentials_for(settings, OPERATOR)("job_svc") == settings.operator_token
    per_call = credentials_for(settings, "job_svc")("email_svc")
    assert callable(per_call)
    assert tokens.verify(settings, per_call(), "email_svc") == Principal("service", "job_svc")


def test_a_verified_token_is_refused_once_it_expires(settings: config.Settings) -> None:
    """Verified tokens are remembered (tokens.VerifiedTokens), never past their expiry."""
    token = tokens.service_token(settings, "job_svc", "email_svc")  # 3 s, +5 s leeway
    assert tokens.verify(settings, token, "email_svc") == Principal("service", "job_svc")
    assert tokens.verify(settings, token, "email_svc") == Principal("service", "job_svc")
    with pytest.raises(tokens.InvalidCredential):  # remembered for its callee only
        tokens.verify(settings, token, "user_svc")
    time.sleep(3 + tokens.LEEWAY_SECONDS + 1.2)
    with pytest.raises(tokens.InvalidCredential):
        tokens.verify(settings, token, "email_svc")


def test_verified_tokens_are_bounded_and_expire() -> None:
    known = tokens.VerifiedTokens(size=2)
    who = Principal("service", "job_svc")
    known.put(("a", "x", "s", "u"), who, expires=100)
    known.put(("b", "x", "s", "u"), who, expires=100)
    known.put(("c", "x", "s", "u"), who, expires=100)  # the oldest goes
    assert known.get(("a", "x", "s", "u"), now=50) is None
    assert known.get(("c", "x", "s", "u"), now=50) == who
    assert known.get(("c", "x", "s", "u"), now=100) is None  # expired
    assert known.get(("c", "x", "s", "u"), now=50) is None  # and forgotten

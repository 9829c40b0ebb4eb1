"""The retry policy: transient errors are retried with a growing, jittered backoff until the
retry horizon, the last attempt at the horizon itself; permanent errors are not retried."""

from __future__ import annotations

import httpx
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from mcsv.twirp import ErrorCode, TwirpError

from internal import config
from internal.services.job_svc.policy import RetryPolicy, describe, is_permanent


def policy(random: float = 0.0) -> RetryPolicy:
    return RetryPolicy(min_backoff=0.5, max_backoff=60.0, horizon=3600.0, random=lambda: random)


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.INVALID_ARGUMENT, ErrorCode.MALFORMED, ErrorCode.NOT_FOUND,
        ErrorCode.FAILED_PRECONDITION, ErrorCode.OUT_OF_RANGE, ErrorCode.PERMISSION_DENIED,
        ErrorCode.UNIMPLEMENTED,
    ],
)  # fmt: skip
def test_errors_of_the_input_are_permanent(code: ErrorCode) -> None:
    error = TwirpError(code, "bad")
    assert is_permanent(error)
    decision = policy().decide(error, attempt=1, now=0.0, retry_until=3600.0)
    assert decision.retry_in is None and "permanent" in decision.reason


@pytest.mark.parametrize(
    "error",
    [
        TwirpError(ErrorCode.UNAVAILABLE, "connection refused"),
        TwirpError(ErrorCode.DEADLINE_EXCEEDED, "timed out"),
        TwirpError(ErrorCode.INTERNAL, "500"),
        TwirpError(ErrorCode.UNKNOWN, "502 from a proxy"),
        TwirpError(ErrorCode.RESOURCE_EXHAUSTED, "busy"),
        httpx.ConnectError("refused"),
        TimeLimitExceeded(),
        RuntimeError("a bug"),
    ],
)
def test_outages_and_everything_else_are_transient(error: BaseException) -> None:
    assert not is_permanent(error)
    decision = policy().decide(error, attempt=3, now=100.0, retry_until=3600.0)
    assert decision.retry_in is not None and decision.retry_in > 0


def test_the_backoff_doubles_from_the_minimum_to_the_maximum_with_jitter() -> None:
    highest, lowest = policy(random=0.999999), policy(random=0.0)
    ceilings = [highest.backoff(attempt) for attempt in range(1, 11)]
    assert ceilings == pytest.approx([0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60], rel=1e-5)
    floors = [lowest.backoff(attempt) for attempt in range(1, 11)]
    assert floors == pytest.approx([0.5, 0.5, 1, 2, 4, 8, 16, 30, 30, 30])  # never under min
    assert highest.backoff(10_000) == pytest.approx(60, rel=1e-5)  # no overflow


def test_retries_end_at_the_horizon_with_a_last_attempt_there() -> None:
    unavailable = TwirpError(ErrorCode.UNAVAILABLE, "down")
    rules = policy(random=0.999999)
    near_the_end = rules.decide(unavailable, attempt=30, now=3590.0, retry_until=3600.0)
    assert near_the_end.retry_in == pytest.approx(10.0)  # not past the horizon
    after = rules.decide(unavailable, attempt=31, now=3600.0, retry_until=3600.0)
    assert after.retry_in is None and "horizon" in after.reason


def test_the_policy_comes_from_the_settings() -> None:
    settings = config.load(
        {
            "JOB_MIN_BACKOFF_MS": "200",
            "JOB_MAX_BACKOFF_MS": "1000",
            "JOB_RETRY_HORIZON_SECONDS": "120",
        }
    )
    rules = RetryPolicy.from_settings(settings)
    assert (rules.min_backoff, rules.max_backoff, rules.horizon) == (0.2, 1.0, 120.0)
    assert rules.retry_until(1000.0) == 1120.0
    defaults = RetryPolicy.from_settings(config.load({}))
    assert (defaults.min_backoff, defaults.max_backoff, defaults.horizon) == (0.5, 60.0, 3600.0)


def test_errors_are_described_for_the_history() -> None:
    assert describe(TwirpError(ErrorCode.UNAVAILABLE, "down")) == "unavailable: down"
    assert describe(TimeLimitExceeded()) == "TimeLimitExceeded"
    assert describe(RuntimeError("boom")) == "RuntimeError: boom"

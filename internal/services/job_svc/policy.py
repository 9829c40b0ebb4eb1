"""The retry policy of every job: whether a failed attempt is tried again, and when.

An outage delays work; it never fails it. A transient error (a peer unavailable or refusing
connections, a timeout, a 5xx answer, anything that is not a Twirp error) is retried after
an exponential backoff, from JOB_MIN_BACKOFF_MS doubling up to JOB_MAX_BACKOFF_MS, each delay
drawn at random between half and all of that (and never under the minimum), until the job's
retry horizon: JOB_RETRY_HORIZON_SECONDS after it was enqueued or retried by hand. The last
attempt is made at the horizon. A permanent error (the input itself is wrong) is never
retried. This is the one place that decides; the worker asks it, the store records it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mcsv.twirp import ErrorCode, TwirpError

from internal import config

# Errors that another attempt cannot fix: the request or the state it needs is wrong.
PERMANENT = frozenset(
    {
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.MALFORMED,
        ErrorCode.NOT_FOUND,
        ErrorCode.FAILED_PRECONDITION,
        ErrorCode.OUT_OF_RANGE,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.UNIMPLEMENTED,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.BAD_ROUTE,
    }
)


def is_permanent(error: BaseException) -> bool:
    """True for a Twirp error that another attempt cannot fix; everything else (unavailable,
    deadline_exceeded, internal, unknown, resource_exhausted, a time limit, a bug's
    exception) is transient."""
    return isinstance(error, TwirpError) and error.code in PERMANENT


def describe(error: BaseException) -> str:
    """An attempt's error as the job's history and the client see it."""
    if isinstance(error, TwirpError):
        return f"{error.code.value}: {error.msg}"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class Decision:
    """Retry after `retry_in` seconds, or (None) discard; `reason` says why, for the log and
    the job's history."""

    retry_in: float | None
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    min_backoff: float  # seconds
    max_backoff: float
    horizon: float
    random: Callable[[], float] = random.random  # in [0, 1); tests pin it

    @classmethod
    def from_settings(cls, settings: config.Settings) -> RetryPolicy:
        return cls(
            min_backoff=settings.job_min_backoff_ms / 1000,
            max_backoff=max(settings.job_max_backoff_ms, settings.job_min_backoff_ms) / 1000,
            horizon=settings.job_retry_horizon_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt `attempt` (1, 2, ...)."""
        ceiling = min(self.max_backoff, self.min_backoff * 2.0 ** min(max(attempt - 1, 0), 60))
        return max(self.min_backoff, ceiling * (0.5 + 0.5 * self.random()))

    def retry_until(self, activated_at: float) -> float:
        """The end of the retry horizon of a job enqueued (or retried by hand) then."""
        return activated_at + self.horizon

    def decide(
        self, error: BaseException, attempt: int, now: float, retry_until: float
    ) -> Decision:
        """What to do after attempt `attempt` failed with `error` at `now`."""
        if is_permanent(error):
            return Decision(None, "a permanent error: not retried")
        if now >= retry_until:
            return Decision(None, f"transient errors until the retry horizon ({attempt} attempts)")
        delay = min(self.backoff(attempt), retry_until - now)
        return Decision(delay, f"a transient error: retried in {delay:.1f}s")


def attempt_time_limit(settings: config.Settings) -> float:
    """Seconds an attempt may take before Dramatiq's time limit interrupts it: a conversion
    may legitimately take as long as ImageMagick may, and then some."""
    return settings.imagemagick_timeout_seconds + 120

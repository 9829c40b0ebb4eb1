"""The job queue's transport: Dramatiq on SQLite (the embedded default), Redis or RabbitMQ.

    broker = open_broker(
        "sqlite:////srv/mcsv/var/broker.db",
        visibility_timeout=60,
        middleware=[
            *default_middleware(retries=retries_middleware(5, 1_000, 60_000)),
            DiscardHook(record_discarded_job),
        ],
    )
    dramatiq.set_broker(broker)

A failed attempt is retried by Dramatiq's `Retries` middleware after an exponential backoff
with jitter; `AttemptErrors` keeps each attempt's error in `message.options["errors"]`. When
the retries are exhausted the worker nacks the message: it lands in the broker's dead letters
(`SQLiteBroker.dead_letters()`, the `.XQ` queue on RabbitMQ and Redis) and `DiscardHook`
calls back with the message and its errors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from .middleware import AttemptErrors, Discarded, DiscardHook
from .sqlite_broker import DeadLetter, DeliveryLimitExceeded, QueueCounts, SQLiteBroker

__all__ = [
    "AttemptErrors",
    "DeadLetter",
    "DeliveryLimitExceeded",
    "DiscardHook",
    "Discarded",
    "QueueCounts",
    "SQLiteBroker",
    "default_middleware",
    "open_broker",
    "retries_middleware",
    "sqlite_path",
]


def retries_middleware(max_retries: int, min_backoff_ms: int, max_backoff_ms: int) -> Retries:
    """Dramatiq's `Retries`: attempt n+1 (n >= 1) waits min_backoff_ms * 2**(n-1), times a
    random jitter in [1, 2), but never more than max_backoff_ms (then 50-100% of it).
    After `max_retries` retries the message is given up."""
    if max_retries < 0:
        raise ValueError(f"max_retries must not be negative, got {max_retries}")
    if min_backoff_ms <= 0:
        raise ValueError(f"min_backoff_ms must be positive, got {min_backoff_ms}")
    if max_backoff_ms < min_backoff_ms:
        raise ValueError(
            f"max_backoff_ms ({max_backoff_ms}) must not be less than"
            f" min_backoff_ms ({min_backoff_ms})"
        )
    return Retries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms)


def default_middleware(retries: Retries | None = None) -> list[Middleware]:
    """Dramatiq's default middleware with `retries` in place of its Retries (20 retries,
    15 s to 7 days), and AttemptErrors after it."""
    return [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        retries or Retries(),
        AttemptErrors(),
    ]


def sqlite_path(url: str) -> str:
    """The file named by a `sqlite:` URL: `sqlite:///abs/path.db` and `sqlite:////abs/path.db`
    are absolute, `sqlite:relative/path.db` is relative to the working directory."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(
            f"sqlite URL {url!r} names a host ({parts.netloc!r}); use sqlite:///abs/path.db"
            " or sqlite:relative/path.db"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"sqlite URL {url!r} must not have a query or a fragment")
    path = "/" + parts.path.lstrip("/") if parts.path.startswith("/") else parts.path
    if path in ("", "/"):
        raise ValueError(f"sqlite URL {url!r} names no file")
    return path


# Out of dramatiq's 1,000,000: maintenance on 5% of fetches (the default is 0.1%), so that a
# dead worker's messages come back within about the visibility timeout.
REDIS_MAINTENANCE_CHANCE = 50_000


def open_broker(
    url: str,
    *,
    middleware: list[Middleware] | None = None,
    visibility_timeout: float | None = None,
    **options: Any,
) -> dramatiq.Broker:
    """The broker for `url`: `sqlite:` (SQLiteBroker), `redis://`/`rediss://` (RedisBroker)
    or `amqp://`/`amqps://` (RabbitmqBroker). `middleware` defaults to
    `default_middleware()`; other options go to the broker's constructor."""
    scheme = urlsplit(url).scheme
    middleware = default_middleware() if middleware is None else middleware
    if scheme == "sqlite":
        if visibility_timeout is not None:
            options.setdefault("visibility_timeout", visibility_timeout)
        return SQLiteBroker(sqlite_path(url), middleware=middleware, **options)
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        if visibility_timeout is not None:
            # A dead worker's messages go back on the queue once its heartbeat is this old,
            # found by the maintenance that workers run on a share of their fetches.
            options.setdefault("heartbeat_timeout", int(visibility_timeout * 1000))
            options.setdefault("maintenance_chance", REDIS_MAINTENANCE_CHANCE)

        return RedisBroker(  # type: ignore[no-untyped-call]
            url=url, middleware=middleware, **options
        )
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=middleware, **options)
    raise ValueError(
        f"unsupported broker URL {url!r}: expected sqlite:, redis://, rediss://, amqp:// or amqps://"
    )

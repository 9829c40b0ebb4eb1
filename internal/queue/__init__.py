"""The job queue's transport: Dramatiq on SQLite (the embedded default), Redis or RabbitMQ.

    broker = open_broker(
        "sqlite:////srv/mcsv/var/broker.db",
        visibility_timeout=60,
        middleware=[*default_middleware(), DiscardHook(record_discarded_message)],
    )
    dramatiq.set_broker(broker)

The queue is a transport: it delivers a message at least once, at its due time
(`enqueue(message, delay=...)`), and keeps no retry policy. Retrying is the job layer's
(job_svc's worker decides, and sends the next attempt's message with its delay), so the
default middleware leaves out Dramatiq's `Retries`; add it yourself to use Dramatiq's retries.
A message the queue gives up on (the SQLite broker's delivery cap, an age limit) is nacked:
it lands in the broker's dead letters (`SQLiteBroker.dead_letters()`, the `.XQ` queue on
RabbitMQ and Redis) and `DiscardHook` calls back with the message and the reason.
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
    ShutdownNotifications,
    TimeLimit,
)

from .middleware import Discarded, DiscardHook
from .sqlite_broker import DeadLetter, DeliveryLimitExceeded, QueueCounts, SQLiteBroker

__all__ = [
    "DeadLetter",
    "DeliveryLimitExceeded",
    "DiscardHook",
    "Discarded",
    "QueueCounts",
    "SQLiteBroker",
    "default_middleware",
    "open_broker",
    "sqlite_path",
]


def default_middleware() -> list[Middleware]:
    """Dramatiq's default middleware without its `Retries` (20 retries, 15 s to 7 days): a
    message is delivered at least once, and retries are the job layer's."""
    return [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines()]


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

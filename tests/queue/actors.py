"""The actors the queue tests' workers run: `python -m dramatiq tests.queue.actors`.

Each records what it does in the runs database (tests.queue.harness.read_runs). The worker
is configured by its environment, as the test starts it:

  QUEUE_TEST_BROKER_URL          the broker (sqlite:, redis:// or amqp://)
  QUEUE_TEST_RUNS                the runs database file
  QUEUE_TEST_QUEUE               the actors' queue (default: "default")
  QUEUE_TEST_VISIBILITY_TIMEOUT  SQLite only: seconds (default: 2)
  QUEUE_TEST_MAX_DELIVERIES      SQLite only (default: 20)
  QUEUE_TEST_POLL_INTERVAL       SQLite only: seconds (default: 0.05)
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Retries

from internal.queue import Discarded, DiscardHook, default_middleware, open_broker
from tests.queue.harness import MAX_BACKOFF_MS, MAX_RETRIES, MIN_BACKOFF_MS, record_run

RUNS = os.environ["QUEUE_TEST_RUNS"]
QUEUE = os.environ.get("QUEUE_TEST_QUEUE", "default")
URL = os.environ["QUEUE_TEST_BROKER_URL"]


def record_discarded(job: Discarded) -> None:
    record_run(RUNS, str(job.args[0]), "discarded", job.reason)


def _sqlite_options() -> dict[str, Any]:
    return {
        "visibility_timeout": float(os.environ.get("QUEUE_TEST_VISIBILITY_TIMEOUT", "2")),
        "max_deliveries": int(os.environ.get("QUEUE_TEST_MAX_DELIVERIES", "20")),
        "poll_interval": float(os.environ.get("QUEUE_TEST_POLL_INTERVAL", "0.05")),
    }


broker = open_broker(
    URL,
    middleware=[
        *default_middleware(),
        # The queue has no retry policy of its own; these tests give it Dramatiq's.
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        DiscardHook(record_discarded),
    ],
    **(_sqlite_options() if URL.startswith("sqlite:") else {}),
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def record(key: str) -> None:
    record_run(RUNS, key, "done")


@dramatiq.actor(queue_name=QUEUE)
def sleep_then_record(key: str, seconds: float) -> None:
    record_run(RUNS, key, "start")
    time.sleep(seconds)
    record_run(RUNS, key, "done")


@dramatiq.actor(queue_name=QUEUE)
def fail_always(key: str) -> None:
    record_run(RUNS, key, "attempt")
    raise RuntimeError(f"failure of {key}")

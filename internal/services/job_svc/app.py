"""job_svc's app: the JobService RPCs on the jobs table, enqueuing on the broker of
BROKER_URL; each /metrics scrape refreshes the jobs-per-queue-and-state gauge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dramatiq
from mcsv.v1.job_twirp_server import JobServiceServer
from starlette.applications import Starlette

from internal import config
from internal.observability import metrics
from internal.queue import open_broker
from internal.services.common.app import service_app
from internal.services.common.readiness import database_probe
from internal.services.job_svc.models import NAME, JobRow
from internal.services.job_svc.service import JobService, sender
from internal.services.job_svc.store import open_jobs


def create_app(settings: config.Settings) -> Starlette:
    store = open_jobs(settings)
    broker = open_broker(settings.broker_url)

    def count_queues() -> None:
        for stats in store.stats(""):
            for state in ("available", "scheduled", "executing", "retryable", "completed",
                          "discarded", "cancelled"):  # fmt: skip
                metrics.QUEUE_DEPTH.labels(stats.queue, state).set(getattr(stats, state))

    service = JobService(store, sender(broker))
    return service_app(
        NAME,
        settings,
        [JobServiceServer(service=service)],
        ready_checks={"database": database_probe(store.database, JobRow)},
        on_shutdown=[_closer(broker)],
        before_metrics=count_queues,
    )


def _closer(broker: dramatiq.Broker) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        broker.close()

    return close

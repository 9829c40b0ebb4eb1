"""job_svc's app: the JobService RPCs on the jobs table, enqueuing on the broker of
BROKER_URL (recording each message sent a moment later, with others), and every few seconds
sending the messages of jobs that were not known to be sent; each /metrics scrape refreshes
the jobs-per-queue-and-state gauge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dramatiq
from mcsv.v1.job_twirp_server import JobServiceServer
from starlette.applications import Starlette

from internal import config
from internal.observability import metrics
from internal.queue import open_broker
from internal.services.common.app import service_app
from internal.services.common.periodic import Periodic
from internal.services.common.readiness import database_probe
from internal.services.job_svc.dispatch import UNSENT_GRACE_SECONDS, Dispatcher
from internal.services.job_svc.models import NAME, JobRow
from internal.services.job_svc.service import JobService
from internal.services.job_svc.store import JobStore, open_jobs

# How soon after a message is sent its mark is recorded, when no enqueue takes it along.
MARKS_INTERVAL_SECONDS = 0.1


def create_app(settings: config.Settings) -> Starlette:
    store = open_jobs(settings)
    broker = open_broker(settings.broker_url)

    def count_queues() -> None:
        for stats in store.stats(""):
            for state in ("available", "scheduled", "executing", "retryable", "completed",
                          "discarded", "cancelled"):  # fmt: skip
                metrics.QUEUE_DEPTH.labels(stats.queue, state).set(getattr(stats, state))

    dispatcher = Dispatcher(store, broker, settings.rpc_timeout_seconds)
    resender = Periodic("resend-unsent-jobs", UNSENT_GRACE_SECONDS / 2, dispatcher.resend_unsent)
    # An enqueue's message is recorded sent by a later transaction, with others (see
    # JobStore.mark_sent), not by one of its own before the call answers.
    store.defer_marks = True
    marker = Periodic(
        "record-sent-marks", MARKS_INTERVAL_SECONDS, store.record_marks, due=store.marks_due
    )
    service = JobService(store, dispatcher)
    app = service_app(
        NAME,
        settings,
        [JobServiceServer(service=service)],
        ready_checks={"database": database_probe(store.database, JobRow)},
        on_shutdown=[resender.closer(), marker.closer(), _recorder(store), _closer(broker)],
        before_metrics=count_queues,
    )
    resender.start()
    marker.start()
    return app


def _recorder(store: JobStore) -> Callable[[], Awaitable[None]]:
    """Records the last marks before the process ends."""

    async def record() -> None:
        store.record_marks()

    return record


def _closer(broker: dramatiq.Broker) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        broker.close()

    return close

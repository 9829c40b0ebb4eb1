"""Putting jobs' messages on the queue. A message carries the job id and the job's dispatch
number (JobRow.dispatch), is due at the job's scheduled time, and once it is on the queue the
row is marked sent. A job whose message was not known to be sent a while after its dispatch
(a sender that died in between, a broker that refused it), or a report whose worker died
while making its first attempt in place (it never had a message), is sent with a new number
by `resend_unsent`, which job_svc runs periodically; the old message, should it exist, is
then stale and runs nothing. So a waiting job always has exactly one live message."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import dramatiq
from opentelemetry.trace import SpanKind

from internal import observability
from internal.observability import metrics
from internal.services.job_svc.models import KINDS, JobRow
from internal.services.job_svc.store import JobStore

log = logging.getLogger(__name__)

# A message not known to be on the queue this long after its dispatch is sent again.
UNSENT_GRACE_SECONDS = 10.0


class Dispatcher:
    """Sends jobs' messages on `broker` and records them sent in `store`."""

    def __init__(
        self, store: JobStore, broker: dramatiq.Broker, report_time_limit: float = 30.0
    ) -> None:
        self.store = store
        self.broker = broker
        # How long a report's attempt (one RPC to user_svc) takes at most: its RPC timeout.
        self.report_time_limit = report_time_limit
        for kind in KINDS.values():
            broker.declare_queue(kind.queue)

    def send(self, job: JobRow) -> None:
        """Sends the job's current message, due at its scheduled time."""
        delay_ms = max(0, round(((job.scheduled_at or 0) - time.time()) * 1000))
        self._enqueue(job.queue, job.actor, job.id, job.dispatch, delay_ms)
        self.store.mark_sent(job.id, job.dispatch)
        if job.attempt == 0:  # a new job (or one retried by hand), not its next attempt
            metrics.child(metrics.JOBS_ENQUEUED, job.queue, job.actor).inc()

    def send_all(self, jobs: Iterable[JobRow]) -> None:
        """Sends each job's message. One that cannot be sent now is left to resend_unsent."""
        for job in jobs:
            try:
                self.send(job)
            except Exception:
                log.exception("job %s: its message could not be sent; it will be resent", job.id)

    def send_again(self, actor: str, job_id: str, dispatch: int, delay_ms: int) -> None:
        """Puts the same message (same job, same number) back on the queue after a delay:
        for a worker that could not reach the jobs table at all."""
        self._enqueue(KINDS[actor].queue, actor, job_id, dispatch, delay_ms)

    def resend_unsent(self) -> int:
        """Sends again the messages of jobs not known to be on the queue; their count."""
        now = time.time()
        jobs = self.store.claim_unsent(
            before=now - UNSENT_GRACE_SECONDS,
            stuck_before=now - self.report_time_limit - UNSENT_GRACE_SECONDS,
        )
        for job in jobs:
            log.warning("job %s: its message was not sent; sending it (number %d)", job.id,
                        job.dispatch)  # fmt: skip
        self.send_all(jobs)
        return len(jobs)

    def _enqueue(self, queue: str, actor: str, job_id: str, dispatch: int, delay_ms: int) -> None:
        with observability.current_span(
            f"enqueue {actor}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.destination.name": queue,
                "mcsv.job_id": job_id,
            },
        ):
            options: dict[str, Any] = {}
            observability.inject_into(options)
            self.broker.enqueue(
                dramatiq.Message(
                    queue_name=queue,
                    actor_name=actor,
                    args=(job_id, dispatch),
                    kwargs={},
                    options=options,
                ),
                delay=delay_ms or None,
            )

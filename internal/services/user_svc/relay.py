"""user_svc's outbox relay: sends the intents of the outbox (outbox.py) to job_svc through the
generated client until job_svc acknowledges them.

- CreateUser and ConvertImage send their own intent right after the commit (deliver, with a
  short timeout), so that in the normal case the job is enqueued before they answer. What
  that send leaves (job_svc down or slow, the process killed in between) the relay task
  sends: at startup, and whenever an intent is due, polling the database.
- A transient failure (unavailable, deadline_exceeded, a dropped connection, a 5xx: any code
  but those in PERMANENT) is retried forever with exponential backoff, per intent and for the
  relay as a whole (it stops a round at the first such failure and waits before the next).
  Failures are logged at most once per LOG_EVERY seconds, with the count of those held back.
- A permanent refusal (invalid_argument and the like: retrying cannot help) rejects the
  intent: it is kept with its error, the error is logged, and its failure is reported by the
  service's `report` callback (a conversion ends FAILED and the client is told) before the
  intent is marked failed.

Why an asyncio task in the app's lifespan and not a thread: it sends through the same async
generated client as the handlers (balanced over job_svc's replicas, traced), does its
database work in the thread pool as they do, and is cancelled with the app at shutdown; a
thread would need blocking clients of its own and a stop protocol. One relay runs per
process; with several replicas, several relays share the database safely (see outbox.py's
leases)."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

import peewee
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp import AsyncJobServiceClient
from opentelemetry import propagate

from internal.observability import current_span
from internal.observability.context import REQUEST_ID, REQUEST_ID_HEADER, scoped
from internal.services.user_svc import outbox
from internal.services.user_svc.outbox import OutboxRow

log = logging.getLogger(__name__)

# Refusals that no retry will change: the request itself is wrong.
PERMANENT = frozenset(
    {
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.MALFORMED,
        ErrorCode.OUT_OF_RANGE,
        ErrorCode.FAILED_PRECONDITION,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.NOT_FOUND,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.UNAUTHENTICATED,
    }
)
MIN_BACKOFF = 0.1  # seconds, doubling per failure...
MAX_BACKOFF = 5.0  # ...up to this, forever
INLINE_TIMEOUT = 5.0  # the send CreateUser and ConvertImage make before they answer
INLINE_LEASE = INLINE_TIMEOUT + 5.0  # how long their intent is theirs alone
LEASE_MARGIN = 5.0  # a relay's lease: its send's timeout and this
POLL = 1.0  # how often an idle relay looks for intents due
BATCH = 16  # intents claimed, and sent concurrently, at a time
LOG_EVERY = 10.0  # seconds between two warnings about failed sends
SUSPECT_FOR = 1.0  # seconds after a failed send in which requests leave theirs to the relay


class Delivery(enum.Enum):
    SENT = "sent"  # job_svc acknowledged: row.job_id is set
    DEFERRED = "deferred"  # a transient failure: due again after its backoff
    REJECTED = "rejected"  # refused for good (reported, or to be reported)


def backoff(failures: int) -> float:
    """The delay after `failures` failures in a row, with jitter (replicas spread out)."""
    return min(MAX_BACKOFF, MIN_BACKOFF * 2.0 ** min(failures, 30)) * random.uniform(0.5, 1.0)


def trace_context() -> dict[str, str]:
    """The current trace and request id, to store with an intent: a later send continues the
    request's trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if request_id := REQUEST_ID.get():
        carrier[REQUEST_ID_HEADER] = request_id
    return carrier


class Throttled:
    """A warning repeated at most once per `every` seconds, saying how many were held back,
    and a line when the trouble is over."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last = -every
        self.held = 0
        self.since_success = 0

    def warning(self, message: str) -> None:
        self.since_success += 1
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return
        if self.held:
            message += f" ({self.held} more failures in the last {now - self.last:.0f}s)"
        log.warning(message)
        self.last, self.held = now, 0

    def success(self) -> None:
        if self.since_success:
            log.info("job_svc enqueues again, after %d failed sends", self.since_success)
            self.since_success, self.held, self.last = 0, 0, -self.every


class Relay:
    """Sends outbox intents to job_svc. `recorded(row, job_id)` runs in the transaction that
    marks an intent sent; `report(row)` reports a rejected intent's failure (raising a
    transient TwirpError to be called again later)."""

    def __init__(
        self,
        database: peewee.Database,
        jobs: AsyncJobServiceClient,
        *,
        timeout: float,
        recorded: Callable[[OutboxRow, str], None],
        report: Callable[[OutboxRow], Awaitable[None]],
    ) -> None:
        self.database = database
        self.jobs = jobs
        self.timeout = timeout
        self.recorded = recorded
        self.report = report
        self.failures = Throttled(LOG_EVERY)
        self._suspect_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._acknowledged: list[tuple[OutboxRow, str]] = []  # sent, not yet marked so
        self._marker: asyncio.Task[None] | None = None

    # The task

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._marker is not None:
            await self._marker  # what job_svc acknowledged is recorded before the process ends

    def wake(self) -> None:
        """Look for due intents now, not at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                sent, deferred = await self.relay_once()
            except Exception as exc:  # the database unreachable, say: keep relaying
                self.failures.warning(f"outbox relay: {type(exc).__name__}: {exc}; retrying")
                sent, deferred = 0, True
            if deferred:
                failures += 1
                await asyncio.sleep(backoff(failures))
            elif sent:
                failures = 0
            else:
                failures = 0
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL)
                self._wake.clear()

    async def relay_once(self) -> tuple[int, bool]:
        """One round: claims the intents due (BATCH at most) and sends them. Returns how many
        it handled and whether one of them failed transiently (then the round stops, and gives
        back the rest)."""
        if not await asyncio.to_thread(outbox.any_due, self.database):
            return 0, False
        rows = await asyncio.to_thread(
            outbox.claim, self.database, BATCH, self.timeout + LEASE_MARGIN
        )
        results = await asyncio.gather(*(self._continue(row) for row in rows))
        return len(rows), Delivery.DEFERRED in results

    async def _continue(self, row: OutboxRow) -> Delivery:
        """Delivers an intent in the trace of the request that made it."""
        with continued_trace(row):
            return await self.deliver(row, self.timeout)

    # One intent

    def suspect(self) -> bool:
        """Whether a send failed transiently a moment ago (and none succeeded since): then
        requests do not send their intent themselves, so as not to wait on a job_svc that is
        down or hung."""
        return time.monotonic() < self._suspect_until

    async def send_own(self, row: OutboxRow) -> Delivery | None:
        """Sends the intent a request has just committed (and holds the lease of), before it
        answers, with INLINE_TIMEOUT. Raises nothing: what was committed stands, and what
        this send could not finish the relay does once the lease has run out."""
        try:
            return await self.deliver(row, INLINE_TIMEOUT)
        except Exception:
            log.exception("sending %s at once failed; the relay will send it", row.key)
            return None

    async def deliver(self, row: OutboxRow, timeout: float) -> Delivery:
        """Sends an intent whose lease the caller holds, and records what came of it."""
        if row.state == outbox.REJECTED:
            return await self._report(row)
        try:
            job_id = await self._send(row, timeout)
        except TwirpError as exc:
            if exc.code not in PERMANENT:
                return await self._defer(row, f"{exc.code.value}: {exc.msg}")
            log.error("job_svc refused %s for good, it will not be enqueued: %s", row.key, exc)
            await asyncio.to_thread(outbox.reject, self.database, row, str(exc))
            return await self._report(row)
        except Exception as exc:  # not a peer's answer: kept, and retried, as a failure
            log.exception("sending %s to job_svc failed", row.key)
            return await self._defer(row, f"{type(exc).__name__}: {exc}")
        row.state, row.job_id, self._suspect_until = outbox.SENT, job_id, 0.0
        self.failures.success()
        self._mark_sent(row, job_id)
        return Delivery.SENT

    def _mark_sent(self, row: OutboxRow, job_id: str) -> None:
        """Records an acknowledged intent as sent, with the others acknowledged meanwhile, in
        one transaction written by one task, after the send has returned: one write and one
        thread hop per batch instead of per request, and not on the request's path. Should
        the process die first, the intent's lease runs out and it is sent again: job_svc
        answers a repeated key with the same job."""
        self._acknowledged.append((row, job_id))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._write_marks(), name="outbox marks")

    async def _write_marks(self) -> None:
        while self._acknowledged:
            batch, self._acknowledged = self._acknowledged, []
            try:
                await asyncio.to_thread(outbox.mark_sent, self.database, batch, self.recorded)
            except Exception:  # the database unreachable: the leases run out, sent again
                log.exception("recording %d intents as sent failed; they will be sent again",
                              len(batch))  # fmt: skip

    async def _send(self, row: OutboxRow, timeout: float) -> str:
        request = bytes(row.request)
        if row.kind == outbox.EMAIL:
            email = job_pb2.EnqueueEmailRequest.FromString(request)
            return (await self.jobs.enqueue_email(email, timeout=timeout)).job.id
        if row.kind == outbox.CONVERSION:
            conversion = job_pb2.EnqueueConversionRequest.FromString(request)
            return (await self.jobs.enqueue_conversion(conversion, timeout=timeout)).job.id
        raise ValueError(f"unknown outbox kind {row.kind!r}")

    async def _defer(self, row: OutboxRow, error: str) -> Delivery:
        self._suspect_until = time.monotonic() + SUSPECT_FOR
        self.failures.warning(f"could not enqueue {row.key} in job_svc ({error}); will retry")
        delay = backoff(row.attempts)
        await asyncio.to_thread(outbox.retry_later, self.database, row, error, delay)
        return Delivery.DEFERRED

    async def _report(self, row: OutboxRow) -> Delivery:
        try:
            await self.report(row)
        except TwirpError as exc:
            if exc.code not in PERMANENT:
                return await self._defer(row, f"reporting the failure: {exc.code.value}")
            log.error("the failure of %s could not be reported: %s", row.key, exc)
        await asyncio.to_thread(outbox.mark_failed, self.database, row)
        return Delivery.REJECTED


@contextmanager
def continued_trace(row: OutboxRow) -> Iterator[None]:
    """A span for a relayed send, child of the request that recorded the intent, with its
    request id and the workflow's id in the logs."""
    carrier = row.trace_context
    subject = "user_id" if row.kind == outbox.EMAIL else "conversion_id"
    with (
        current_span(
            f"outbox relay {row.kind}",
            context=propagate.extract(carrier),
            attributes={"mcsv.outbox_key": row.key},
        ),
        scoped(request_id=carrier.get(REQUEST_ID_HEADER, ""), **{subject: row.subject_id}),
    ):
        yield

"""The jobs table's transitions (JobStore), each recording its event: enqueue once per
idempotency key; start an attempt; complete, fail (retry later or discard) or be given up by
the queue; cancel and retry by hand. A job that ends (completed, discarded, cancelled)
enqueues the report of its outcome, stamped with that event's sequence, in the same
transaction; a worker's transitions start that report's first attempt at once, for the
worker to make in the same thread. A success whose report the worker made before recording
it (an EarlyReport, stamped with the sequence the completion was expected to get) records
that report's job as made, in the completion's transaction. Transitions return the jobs that
need a message sent (dispatch.py sends them once the transaction has committed) or, already
executing, the reports to run. job_svc's RPCs and its workers both use it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import peewee
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, job_pb2

from internal import config
from internal.data import (
    create_tables,
    fetch_rows,
    insert_once,
    locked,
    open_database,
    save_row,
    write_transaction,
)
from internal.services.common.errors import found
from internal.services.job_svc import outcomes
from internal.services.job_svc.models import (
    FINAL_STATES,
    MIGRATIONS,
    MODELS,
    NAME,
    REPORT,
    ArgsT,
    JobEventRow,
    JobKind,
    JobRow,
)
from internal.services.job_svc.policy import Decision, RetryPolicy

WAITING = (job_pb2.JOB_STATE_AVAILABLE, job_pb2.JOB_STATE_RETRYABLE)


@dataclass(frozen=True)
class EarlyReport:
    """A success's report, made by the worker before the success is recorded: its job's id
    to be, the version it was stamped with (the completion's expected event sequence), when
    the attempt started and ended, and its error (None: user_svc acknowledged it)."""

    id: str
    args: job_pb2.ReportJobArgs
    version: int
    started_at: float
    finished_at: float
    error: BaseException | None


class JobStore:
    """The jobs table and its transitions; `policy` sets each job's retry horizon."""

    def __init__(self, database: peewee.Database, policy: RetryPolicy) -> None:
        self.database = database
        self.policy = policy
        self.sql = HotStatements(database)
        # With defer_marks, mark_sent leaves its marks here for the next enqueue's
        # transaction, or record_marks, to write.
        self.defer_marks = False
        self._unrecorded: list[tuple[str, int]] = []
        self._unrecorded_lock = threading.Lock()
        self.marks_due = threading.Event()  # set while marks wait to be written

    # -- enqueueing ---------------------------------------------------------------------

    def enqueue(
        self, kind: JobKind[ArgsT], args: ArgsT, idempotency_key: str
    ) -> tuple[JobRow, bool]:
        """The job for this key: created (True; send it) or the one enqueued before (False:
        whatever its state, it is not sent again)."""
        marks = self._take_marks()
        try:
            with self.database.connection_context(), write_transaction(self.database):
                self._write_marks(marks)
                return self._insert(kind, args.SerializeToString(), idempotency_key, time.time())
        except BaseException:
            self._keep_marks(marks)
            raise

    def mark_sent(self, job_id: str, dispatch: int) -> None:
        """The message numbered `dispatch` is on the queue (unless a newer one replaced it).
        With defer_marks (job_svc's RPCs) it is recorded a moment later, with others: by the
        next enqueue's transaction, or by record_marks, which the service runs a moment after
        `marks_due` is set. A mark lost with its process only makes resend_unsent send the job
        again, with a new number (the message sent first then runs nothing)."""
        if self.defer_marks:
            with self._unrecorded_lock:
                self._unrecorded.append((job_id, dispatch))
            self.marks_due.set()
            return
        with self.database.connection_context(), write_transaction(self.database):
            self._write_marks([(job_id, dispatch)])

    def record_marks(self) -> None:
        """Writes the marks mark_sent left (see defer_marks) in one transaction."""
        marks = self._take_marks()
        if not marks:
            return
        try:
            with self.database.connection_context(), write_transaction(self.database):
                self._write_marks(marks)
        except BaseException:
            self._keep_marks(marks)
            raise

    def _take_marks(self) -> list[tuple[str, int]]:
        with self._unrecorded_lock:
            marks, self._unrecorded = self._unrecorded, []
        return marks

    def _keep_marks(self, marks: list[tuple[str, int]]) -> None:
        """Marks whose transaction failed, for the next one."""
        with self._unrecorded_lock:
            self._unrecorded[:0] = marks
        if marks:
            self.marks_due.set()

    def _write_marks(self, marks: list[tuple[str, int]]) -> None:
        for job_id, dispatch in marks:
            self.database.execute_sql(  # type: ignore[no-untyped-call]
                self.sql.mark_sent, (True, job_id, dispatch)
            )

    def claim_unsent(self, before: float, stuck_before: float, limit: int = 100) -> list[JobRow]:
        """Jobs that have no message and need one, each given a new dispatch number to send
        (any message of theirs that is on the queue after all will then run nothing):
        waiting ones whose message was not known to be sent by `before` (its sender died,
        or the broker refused it), and reports whose first attempt, made by the worker that
        finished their job (they never had a message), started before `stuck_before` and has
        not ended (that worker died)."""
        now = time.time()
        unsent = JobRow.sent == False  # noqa: E712  (peewee builds SQL from it)
        stuck_report = (
            (JobRow.actor == REPORT.actor)
            & (JobRow.state == job_pb2.JOB_STATE_EXECUTING)
            & (JobRow.attempted_at < stuck_before)
        )
        with self.database.connection_context(), write_transaction(self.database):
            rows = list(
                locked(
                    JobRow.select()
                    .where(
                        unsent
                        & (
                            ((JobRow.dispatched_at < before) & JobRow.state.in_(WAITING))
                            | stuck_report
                        )
                    )
                    .order_by(JobRow.dispatched_at)
                    .limit(limit)
                )
            )
            for job in rows:
                self._redispatch(job, now)
                save_row(job)
        return rows

    # -- attempts -----------------------------------------------------------------------

    def start(self, job_id: str, dispatch: int, worker: str) -> JobRow | None:
        """Starts an attempt for the message numbered `dispatch`; None when that message must
        not run the job: it has finished (or was cancelled), or a newer message replaced this
        one. A job already executing starts again for the same message: its worker died and
        the queue delivered the message again."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job: JobRow | None = self._locked(job_id)
            if job is None or job.state in FINAL_STATES or job.dispatch != dispatch:
                return None
            job.state, job.attempt, job.attempted_at, job.worker = (
                job_pb2.JOB_STATE_EXECUTING, job.attempt + 1, now, worker
            )  # fmt: skip
            save_row(job)
            job.version = self._event(job, job_pb2.JOB_EVENT_TYPE_STARTED, now, worker=worker)
        return job

    def complete(
        self,
        job: JobRow,
        report: job_pb2.ReportJobArgs | None,
        early: EarlyReport | None = None,
    ) -> list[JobRow]:
        """The attempt succeeded: the job is completed (even if it was cancelled while the
        attempt ran: the work is done) and `report` enqueued, its first attempt started by
        the job's worker. Returns that report, to run.

        With `early`, the worker made that attempt already, before this: if its version is
        the completion's, the report job is recorded with it, completed (returned, not to
        run) or, when it failed, executing (returned, for the worker to record the failure).
        Otherwise (the job's history moved meanwhile, a cancellation say) the report is
        enqueued with the right version as without `early`, to be made again."""
        now = time.time() if early is None else early.started_at
        with self.database.connection_context(), write_transaction(self.database):
            fresh = found(self._locked(job.id), "job", job.id)
            if fresh.state == job_pb2.JOB_STATE_COMPLETED:
                return []  # a second run of the same message finished first
            self._end(fresh, job_pb2.JOB_STATE_COMPLETED, now)
            save_row(fresh)
            version = self._event(fresh, job_pb2.JOB_EVENT_TYPE_COMPLETED, now, worker=job.worker)
            if early is not None and early.version == version:
                return self._early_report(fresh, early, job.worker)
            if early is not None:
                now = time.time()
            return self._report(fresh, report, version, now, run_by=job.worker)

    def fail(self, job: JobRow, error: str, decision: Decision) -> list[JobRow]:
        """The attempt failed: the job waits for its next attempt (the policy's delay; it is
        returned, to send) or is discarded and its failure reported (the report returned, to
        run, as complete's). A job cancelled, or run by a newer message, meanwhile is left as
        it is."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            fresh = found(self._locked(job.id), "job", job.id)
            self._record_error(fresh, error, now)
            self._event(fresh, job_pb2.JOB_EVENT_TYPE_FAILED, now, message=error, worker=job.worker)
            if fresh.state != job_pb2.JOB_STATE_EXECUTING or fresh.dispatch != job.dispatch:
                save_row(fresh)
                return []
            if decision.retry_in is None:
                self._end(fresh, job_pb2.JOB_STATE_DISCARDED, now)
                save_row(fresh)
                version = self._event(
                    fresh, job_pb2.JOB_EVENT_TYPE_DISCARDED, now, message=decision.reason
                )
                report = outcomes.ended(fresh, common_pb2.OUTCOME_FAILED, error)
                return self._report(fresh, report, version, now, run_by=job.worker)
            fresh.state, fresh.scheduled_at = job_pb2.JOB_STATE_RETRYABLE, now + decision.retry_in
            self._redispatch(fresh, now)
            save_row(fresh)
            self._event(
                fresh, job_pb2.JOB_EVENT_TYPE_RETRY_SCHEDULED, now,
                message=f"in {decision.retry_in:.1f}s",
            )  # fmt: skip
        return [fresh]

    def give_up(
        self, job_id: str, dispatch: int, reason: str, worker: str
    ) -> tuple[JobRow | None, list[JobRow]]:
        """The queue gave up the message numbered `dispatch` (see worker.Jobs.given_up): its
        job is discarded and its failure reported (the report's first attempt started by
        `worker`), unless the job had finished or a newer message replaced that one. Returns
        the job (None when nothing changed) and the report to run."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job: JobRow | None = self._locked(job_id)
            if job is None or job.state in FINAL_STATES or job.dispatch != dispatch:
                return None, []
            message = f"given up by the job queue: {reason}"
            self._record_error(job, message, now)
            self._end(job, job_pb2.JOB_STATE_DISCARDED, now)
            save_row(job)
            version = self._event(job, job_pb2.JOB_EVENT_TYPE_DISCARDED, now, message=message)
            report = outcomes.ended(job, common_pb2.OUTCOME_FAILED, message)
            return job, self._report(job, report, version, now, run_by=worker)

    # -- by hand --------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str) -> tuple[JobRow, list[JobRow]]:
        """Cancels a job that has not finished and reports it cancelled. Returns the job and
        the report, to send."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state in FINAL_STATES:
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {job_pb2.JobState.Name(job.state)} and cannot be cancelled",
                )
            self._end(job, job_pb2.JOB_STATE_CANCELLED, now)
            save_row(job)
            version = self._event(job, job_pb2.JOB_EVENT_TYPE_CANCELLED, now, message=reason)
            report = outcomes.ended(job, common_pb2.OUTCOME_CANCELLED, reason)
            return job, self._report(job, report, version, now)

    def retry(self, job_id: str) -> JobRow:
        """Makes a discarded or cancelled job available again, with a fresh retry horizon and
        a new dispatch number. Returns it, to send."""
        now = time.time()
        with self.database.connection_context(), write_transaction(self.database):
            job = self._get(job_id)
            if job.state not in (job_pb2.JOB_STATE_DISCARDED, job_pb2.JOB_STATE_CANCELLED):
                raise TwirpError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"job {job_id} is {job_pb2.JobState.Name(job.state)}; only discarded or "
                    "cancelled jobs can be retried",
                )
            job.state, job.attempt, job.scheduled_at, job.finished_at = (
                job_pb2.JOB_STATE_AVAILABLE, 0, now, None
            )  # fmt: skip
            job.retry_until = self.policy.retry_until(now)
            self._redispatch(job, now)
            save_row(job)
            self._event(job, job_pb2.JOB_EVENT_TYPE_RETRIED, now)
        return job

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> tuple[JobRow, list[JobEventRow]]:
        with self.database.connection_context():
            job = self._get(job_id)
            events = list(
                JobEventRow.select()
                .where(JobEventRow.job_id == job_id)
                .order_by(JobEventRow.sequence)
            )
        return job, events

    def page(
        self, queue: str, state: int, actor: str, limit: int, offset: int
    ) -> tuple[list[JobRow], bool]:
        """A page of jobs, newest first, and whether more follow."""
        query = JobRow.select().order_by(JobRow.inserted_at.desc(), JobRow.id)
        if queue:
            query = query.where(JobRow.queue == queue)
        if state:
            query = query.where(JobRow.state == state)
        if actor:
            query = query.where(JobRow.actor == actor)
        with self.database.connection_context():
            rows = list(query.offset(offset).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    def stats(self, queue: str) -> list[job_pb2.QueueStats]:
        query = JobRow.select(JobRow.queue, JobRow.state, peewee.fn.COUNT(JobRow.id).alias("n"))
        if queue:
            query = query.where(JobRow.queue == queue)
        by_queue: dict[str, job_pb2.QueueStats] = {}
        with self.database.connection_context():
            counted: Iterable[tuple[str, int, int]] = query.group_by(  # type: ignore[assignment]
                JobRow.queue, JobRow.state
            ).tuples()  # the stubs do not know tuples() yields tuples
            for queue_name, state, count in counted:
                stats = by_queue.setdefault(queue_name, job_pb2.QueueStats(queue=queue_name))
                field = job_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()
                setattr(stats, field, getattr(stats, field) + count)
        return [by_queue[name] for name in sorted(by_queue)]

    # -- helpers (inside a write transaction) -----------------------------------------------

    def _insert(
        self,
        kind: JobKind[ArgsT],
        args: bytes,
        idempotency_key: str,
        now: float,
        started_by: str = "",
        job_id: str = "",
    ) -> tuple[JobRow, bool]:
        """The job for this key, created (True) if new (with `job_id`, or a new one): waiting
        for its message or, with `started_by`, in its first attempt by that worker (events
        enqueued, then started)."""
        started = (
            {"state": job_pb2.JOB_STATE_EXECUTING, "attempt": 1, "attempted_at": now,
             "worker": started_by}
            if started_by
            else {"state": job_pb2.JOB_STATE_AVAILABLE}
        )  # fmt: skip
        job, created = insert_once(
            JobRow,
            JobRow.idempotency_key,
            id=job_id or uuid.uuid4().hex,
            idempotency_key=idempotency_key,
            queue=kind.queue,
            actor=kind.actor,
            args=args,
            inserted_at=now,
            scheduled_at=now,
            retry_until=self.policy.retry_until(now),
            dispatch=1,
            sent=False,
            dispatched_at=now,
            **started,
        )
        if created:
            self._event(job, job_pb2.JOB_EVENT_TYPE_ENQUEUED, now, sequence=1, attempt=0)
            if started_by:
                self._event(job, job_pb2.JOB_EVENT_TYPE_STARTED, now, worker=started_by, sequence=2)
        return job, created

    def _report(
        self,
        job: JobRow,
        report: job_pb2.ReportJobArgs | None,
        version: int,
        now: float,
        run_by: str = "",
    ) -> list[JobRow]:
        """Enqueues the report of `job`'s outcome decided by its event number `version`; with
        `run_by`, its first attempt is started by that worker, which makes it right away and
        sends no message (unless the attempt fails)."""
        if report is None:
            return []
        stamped = outcomes.stamped(report, version, now).SerializeToString()
        key = outcomes.report_key(job, version)
        reporter, created = self._insert(REPORT, stamped, key, now, started_by=run_by)
        return [reporter] if created else []

    def _early_report(self, job: JobRow, early: EarlyReport, worker: str) -> list[JobRow]:
        """Records the report the worker made before `job`'s completion (see complete)."""
        key = outcomes.report_key(job, early.version)
        args = early.args.SerializeToString()
        reporter, created = self._insert(
            REPORT, args, key, early.started_at, started_by=worker, job_id=early.id
        )
        if not created:
            return []
        if early.error is None:
            self._end(reporter, job_pb2.JOB_STATE_COMPLETED, early.finished_at)
            save_row(reporter)
            self._event(reporter, job_pb2.JOB_EVENT_TYPE_COMPLETED, early.finished_at,
                        worker=worker, sequence=3)  # fmt: skip
        return [reporter]

    def _end(self, job: JobRow, state: int, now: float) -> None:
        """A final state: the job owes no message any more (nor does resend_unsent look)."""
        job.state, job.finished_at, job.sent = state, now, True

    def _redispatch(self, job: JobRow, now: float) -> None:
        """A new message number: only the message sent with it may run the job."""
        job.dispatch, job.sent, job.dispatched_at = job.dispatch + 1, False, now

    def _record_error(self, job: JobRow, error: str, now: float) -> None:
        errors = json.loads(job.errors)
        errors.append({"attempt": job.attempt, "message": error, "failed_at": now})
        job.errors = json.dumps(errors)

    def _get(self, job_id: str) -> JobRow:
        return found(self._locked(job_id), "job", job_id)

    def _locked(self, job_id: str) -> JobRow | None:
        """The job, its row locked until the transaction ends (on PostgreSQL)."""
        rows = fetch_rows(JobRow, self.sql.locked_job, (job_id,))
        return rows[0] if rows else None

    def _event(
        self,
        job: JobRow,
        type_: int,
        at: float,
        *,
        message: str = "",
        worker: str = "",
        sequence: int = 0,
        attempt: int | None = None,
    ) -> int:
        """Appends an event to the job's history; returns its sequence (`sequence` when the
        caller knows it: a job created in this transaction). `attempt`: the job's own."""
        if not sequence:
            read = self.database.execute_sql(self.sql.last_event, (job.id,))  # type: ignore[no-untyped-call]
            (last,) = read.fetchone()
            sequence = (last or 0) + 1
        attempt = job.attempt if attempt is None else attempt
        self.database.execute_sql(  # type: ignore[no-untyped-call]
            self.sql.add_event, (job.id, sequence, type_, at, attempt, message, worker)
        )
        return sequence


class HotStatements:
    """The SQL of the statements every job runs several times, written once: peewee builds
    a query's SQL anew on each run, which cost most of a worker's time per job. The tables'
    models still define the schema; these name its columns."""

    def __init__(self, database: peewee.Database) -> None:
        param = database.param
        jobs, events = JobRow._meta.table_name, JobEventRow._meta.table_name
        columns = ", ".join(f'"{field.column_name}"' for field in JobRow._meta.sorted_fields)
        lock = " FOR UPDATE" if database.for_update else ""
        self.locked_job = f'SELECT {columns} FROM "{jobs}" WHERE "id" = {param}{lock}'
        self.mark_sent = (
            f'UPDATE "{jobs}" SET "sent" = {param} WHERE "id" = {param} AND "dispatch" = {param}'
        )
        self.last_event = f'SELECT MAX("sequence") FROM "{events}" WHERE "job_id" = {param}'
        event_columns = ("job_id", "sequence", "type", "occurred_at", "attempt", "message",
                         "worker")  # fmt: skip
        quoted = ", ".join(f'"{column}"' for column in event_columns)
        values = ", ".join(param for _ in event_columns)
        self.add_event = f'INSERT INTO "{events}" ({quoted}) VALUES ({values})'


def open_jobs(settings: config.Settings) -> JobStore:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, MODELS, service=NAME, migrations=MIGRATIONS)
    return JobStore(database, RetryPolicy.from_settings(settings))

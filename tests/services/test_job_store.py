"""job_svc's job table and history on a real SQLite database: idempotent enqueue, one live
message per job (dispatch numbers), attempts retried or discarded as the policy decides with
every error kept, outcome reports enqueued with their version, the queue giving a message up,
cancel and manual retry, resending unsent messages, stats and paging; the schema's indexes
and the query plans they give."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, job_pb2

from internal import config
from internal.data import create_tables, open_database
from internal.services.common import paging
from internal.services.job_svc import outcomes
from internal.services.job_svc.models import (
    CONVERSION,
    EMAIL,
    MIGRATIONS,
    MODELS,
    NAME,
    REPORT,
    JobRow,
    job_message,
)
from internal.services.job_svc.policy import Decision
from internal.services.job_svc.store import EarlyReport, JobStore, open_jobs

RETRY = Decision(0.5, "a transient error")
DISCARD = Decision(None, "a permanent error")


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    settings = config.load({"MCSV_DATA_DIR": str(tmp_path), "JOB_RETRY_HORIZON_SECONDS": "60"})
    return open_jobs(settings)


def email_args(user: str = "u1") -> job_pb2.EmailJobArgs:
    return job_pb2.EmailJobArgs(
        idempotency_key=f"welcome:{user}",
        user_id=user,
        recipient=f"{user}@example.com",
        template=common_pb2.EMAIL_TEMPLATE_WELCOME,
    )


def history(store: JobStore, job_id: str) -> list[str]:
    _, events = store.get(job_id)
    return [job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in events]


def started(store: JobStore, job: JobRow) -> JobRow:
    running = store.start(job.id, job.dispatch, "w:1")
    assert running is not None
    return running


def reported(report_job: JobRow) -> common_pb2.EmailDelivery:
    assert report_job.actor == REPORT.actor and report_job.queue == "reports"
    return REPORT.parse_args(report_job.args).email_delivered


def test_enqueue_is_idempotent_on_its_key(store: JobStore) -> None:
    first, created = store.enqueue(EMAIL, email_args(), "email:welcome:u1")
    again, created_again = store.enqueue(EMAIL, email_args(), "email:welcome:u1")
    assert created and not created_again
    assert first.id == again.id and again.dispatch == first.dispatch == 1
    assert history(store, first.id) == ["ENQUEUED"]
    message = job_message(first)
    assert message.retry_until.ToSeconds() == pytest.approx(first.inserted_at + 60, abs=1)


def test_only_the_current_message_starts_a_job(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    assert store.start(job.id, job.dispatch + 1, "w:1") is None  # no such message yet
    running = started(store, job)
    # The same message delivered again (its worker died): another attempt.
    again = store.start(job.id, job.dispatch, "w:2")
    assert again is not None and again.attempt == 2
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "STARTED"]
    (retried,) = store.fail(again, "unavailable: down", RETRY)
    assert retried.dispatch == running.dispatch + 1 and not retried.sent
    assert retried.scheduled_at == pytest.approx(time.time() + 0.5, abs=0.5)
    assert store.start(job.id, running.dispatch, "w:1") is None  # the old message is stale
    assert started(store, retried).attempt == 3


def test_a_job_retried_then_discarded_keeps_every_error_and_reports_its_failure(
    store: JobStore,
) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    for attempt in (1, 2):
        running = started(store, job)
        assert running.attempt == attempt
        (job,) = store.fail(running, f"boom {attempt}", RETRY)
    (report_job,) = store.fail(started(store, job), "boom 3", DISCARD)
    assert store.start(job.id, job.dispatch, "w:1") is None  # discarded jobs never run again
    row, events = store.get(job.id)
    message = job_message(row)
    assert message.state == job_pb2.JOB_STATE_DISCARDED
    assert [e.message for e in message.errors] == ["boom 1", "boom 2", "boom 3"]
    assert history(store, job.id) == [
        "ENQUEUED",
        "STARTED", "FAILED", "RETRY_SCHEDULED",
        "STARTED", "FAILED", "RETRY_SCHEDULED",
        "STARTED", "FAILED", "DISCARDED",
    ]  # fmt: skip
    delivery = reported(report_job)
    assert delivery.outcome == common_pb2.OUTCOME_FAILED and delivery.error == "boom 3"
    assert (delivery.job_id, delivery.user_id) == (job.id, "u1")
    assert delivery.version == events[-1].sequence == 10
    # Its first attempt is started by the worker that discarded the job, to make at once.
    assert report_job.state == job_pb2.JOB_STATE_EXECUTING and report_job.worker == "w:1"
    assert history(store, report_job.id) == ["ENQUEUED", "STARTED"]


def test_a_completed_job_reports_its_success_once_and_is_not_run_again(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = started(store, job)
    success = outcomes.email_succeeded(running, email_args(), "email-1")
    (report_job,) = store.complete(running, success)
    assert store.complete(running, success) == []  # a second run finishing later
    assert store.start(job.id, job.dispatch, "w:2") is None
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "COMPLETED"]
    delivery = reported(report_job)
    assert (delivery.outcome, delivery.email_id, delivery.version) == (
        common_pb2.OUTCOME_SUCCEEDED, "email-1", 3,
    )  # fmt: skip
    assert delivery.finished_at.seconds > 0


def early(running: JobRow, error: BaseException | None = None) -> EarlyReport:
    """The report of `running`'s success as a worker makes it before recording the success:
    stamped with the version the completion is expected to get."""
    version, at = running.version + 1, time.time()
    success = outcomes.stamped(outcomes.email_succeeded(running, email_args(), "email-1"),
                               version, at)  # fmt: skip
    return EarlyReport(f"report-of-{running.id}", success, version, at, at + 0.01, error)


def test_a_report_made_before_its_success_is_recorded_with_it(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = started(store, job)
    made = early(running)
    (report_job,) = store.complete(running, made.args, made)
    assert report_job.id == made.id and report_job.state == job_pb2.JOB_STATE_COMPLETED
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "COMPLETED"]
    assert history(store, report_job.id) == ["ENQUEUED", "STARTED", "COMPLETED"]
    stored, events = store.get(report_job.id)
    assert (stored.attempt, stored.sent, stored.worker) == (1, True, "w:1")
    assert [e.occurred_at for e in events] == [made.started_at, made.started_at, made.finished_at]
    assert reported(stored).version == 3 == store.get(job.id)[1][-1].sequence
    assert store.complete(running, made.args, made) == []  # a second run finishing later
    past = time.time() - 60
    assert store.claim_unsent(before=time.time() + 1, stuck_before=time.time() + 1) == []
    assert store.claim_unsent(before=past, stuck_before=past) == []


def test_a_report_made_before_its_success_that_failed_is_recorded_executing(
    store: JobStore,
) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = started(store, job)
    made = early(running, TwirpError(ErrorCode.UNAVAILABLE, "user_svc is down"))
    (report_job,) = store.complete(running, made.args, made)
    assert report_job.id == made.id and report_job.state == job_pb2.JOB_STATE_EXECUTING
    (retryable,) = store.fail(report_job, "user_svc is down", RETRY)  # as the worker does
    assert retryable.state == job_pb2.JOB_STATE_RETRYABLE
    assert history(store, report_job.id) == ["ENQUEUED", "STARTED", "FAILED", "RETRY_SCHEDULED"]
    assert reported(retryable).version == 3


def test_a_report_made_before_a_cancel_was_recorded_is_enqueued_again_with_its_version(
    store: JobStore,
) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = started(store, job)
    made = early(running)  # stamped 3, which the cancellation takes
    _, (cancel_report,) = store.cancel(job.id, "too late")
    (report_job,) = store.complete(running, made.args, made)
    assert report_job.id != made.id and report_job.state == job_pb2.JOB_STATE_EXECUTING
    assert history(store, report_job.id) == ["ENQUEUED", "STARTED"]  # to be made again
    assert reported(cancel_report).version == 3
    assert reported(report_job).version == 4 == store.get(job.id)[1][-1].sequence
    assert store.get(job.id)[0].state == job_pb2.JOB_STATE_COMPLETED


def test_a_message_the_queue_gave_up_discards_its_job_unless_stale_or_finished(
    store: JobStore,
) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    (retryable,) = store.fail(started(store, job), "boom", RETRY)
    assert store.give_up(job.id, job.dispatch, "stale message", "w:2") == (None, [])
    discarded, (report_job,) = store.give_up(
        job.id, retryable.dispatch, "DeliveryLimitExceeded", "w:2"
    )
    assert discarded is not None and discarded.state == job_pb2.JOB_STATE_DISCARDED
    assert report_job.worker == "w:2"
    assert store.give_up(job.id, retryable.dispatch, "again", "w:2") == (None, [])  # finished
    assert store.give_up("nope", 1, "unknown", "w:2") == (None, [])
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "FAILED", "RETRY_SCHEDULED",
                                      "DISCARDED"]  # fmt: skip
    delivery = reported(report_job)
    assert delivery.outcome == common_pb2.OUTCOME_FAILED
    assert delivery.error == "given up by the job queue: DeliveryLimitExceeded"
    assert job_message(store.get(job.id)[0]).errors[-1].message == delivery.error


def test_cancel_reports_it_and_manual_retry_sends_a_new_message(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    with pytest.raises(TwirpError) as refused:
        store.retry(job.id)
    assert refused.value.code is ErrorCode.FAILED_PRECONDITION
    cancelled, (report_job,) = store.cancel(job.id, "changed my mind")
    assert cancelled.state == job_pb2.JOB_STATE_CANCELLED
    assert report_job.state == job_pb2.JOB_STATE_AVAILABLE and not report_job.sent  # to send
    delivery = reported(report_job)
    assert (delivery.outcome, delivery.error, delivery.version) == (
        common_pb2.OUTCOME_CANCELLED, "changed my mind", 2,
    )  # fmt: skip
    assert store.start(job.id, job.dispatch, "w:1") is None
    with pytest.raises(TwirpError) as again:
        store.cancel(job.id, "twice")
    assert again.value.code is ErrorCode.FAILED_PRECONDITION
    retried = store.retry(job.id)
    assert retried.state == job_pb2.JOB_STATE_AVAILABLE and retried.attempt == 0
    assert retried.dispatch == job.dispatch + 1 and not retried.sent
    assert retried.retry_until == pytest.approx(time.time() + 60, abs=1)
    assert store.start(job.id, job.dispatch, "w:1") is None  # the cancelled message is stale
    (report_job,) = store.complete(started(store, retried), outcomes.email_succeeded(
        retried, email_args(), "email-1"))  # fmt: skip
    assert reported(report_job).version > delivery.version  # the later outcome wins
    assert history(store, job.id) == ["ENQUEUED", "CANCELLED", "RETRIED", "STARTED", "COMPLETED"]
    with pytest.raises(TwirpError) as missing:
        store.get("nope")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_an_attempt_that_succeeds_after_a_cancel_completes_the_job(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = started(store, job)
    _, (cancel_report,) = store.cancel(job.id, "too late")
    assert store.fail(running, "boom", RETRY) == []  # a cancelled job is not retried
    (success_report,) = store.complete(
        running, outcomes.email_succeeded(running, email_args(), "email-1")
    )
    assert store.get(job.id)[0].state == job_pb2.JOB_STATE_COMPLETED
    assert reported(success_report).version > reported(cancel_report).version


def test_unsent_messages_are_claimed_once_with_a_new_number(store: JobStore) -> None:
    sent, _ = store.enqueue(EMAIL, email_args("u1"), "k1")
    store.mark_sent(sent.id, sent.dispatch)
    lost, _ = store.enqueue(EMAIL, email_args("u2"), "k2")
    past = time.time() - 60
    assert store.claim_unsent(before=past, stuck_before=past) == []  # not overdue yet
    (claimed,) = store.claim_unsent(before=time.time() + 1, stuck_before=past)
    assert claimed.id == lost.id and claimed.dispatch == lost.dispatch + 1
    assert store.claim_unsent(before=time.time() - 1, stuck_before=past) == []  # just now
    store.mark_sent(lost.id, lost.dispatch)  # the old message's send finishing late
    assert store.start(lost.id, lost.dispatch, "w:1") is None
    store.mark_sent(claimed.id, claimed.dispatch)
    assert store.claim_unsent(before=time.time() + 1, stuck_before=past) == []


def sent(store: JobStore, job_id: str) -> bool:
    return bool(store.get(job_id)[0].sent)


def test_deferred_marks_ride_with_the_next_enqueue_or_are_recorded_together(
    store: JobStore,
) -> None:
    store.defer_marks = True  # as job_svc's app sets it
    first, _ = store.enqueue(EMAIL, email_args("u1"), "k1")
    assert not store.marks_due.is_set()  # job_svc's marker sleeps while nothing is due
    store.mark_sent(first.id, first.dispatch)
    assert not sent(store, first.id)  # not yet written
    assert store.marks_due.is_set()  # it wakes to write it, unless an enqueue does first
    second, _ = store.enqueue(EMAIL, email_args("u2"), "k2")
    assert sent(store, first.id) and not sent(store, second.id)  # in the enqueue's transaction
    store.mark_sent(second.id, second.dispatch)
    with pytest.raises(AttributeError):
        store.enqueue(EMAIL, None, "k3")  # type: ignore[misc]  # a transaction that fails
    assert not sent(store, second.id)  # rolled back with it, and kept for the next one
    store.record_marks()
    assert sent(store, second.id)
    store.record_marks()  # nothing left: nothing written
    past = time.time() - 60
    assert store.claim_unsent(before=time.time() + 1, stuck_before=past) == []


def test_a_report_whose_worker_died_before_its_first_attempt_ended_is_sent(
    store: JobStore,
) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    store.mark_sent(job.id, job.dispatch)
    (report_job,) = store.complete(started(store, job), outcomes.email_succeeded(
        job, email_args(), "email-1"))  # fmt: skip
    past, future = time.time() - 60, time.time() + 1
    assert store.claim_unsent(before=future, stuck_before=past) == []  # still running
    (claimed,) = store.claim_unsent(before=future, stuck_before=future)
    assert claimed.id == report_job.id and claimed.dispatch == report_job.dispatch + 1
    again = store.start(report_job.id, claimed.dispatch, "w:2")  # its message, delivered
    assert again is not None and again.attempt == 2


def test_stats_and_pages(store: JobStore) -> None:
    ids = [store.enqueue(EMAIL, email_args(f"u{i}"), f"e{i}")[0].id for i in range(5)]
    conversion, _ = store.enqueue(CONVERSION, job_pb2.ConversionJobArgs(conversion_id="c"), "c")
    first, _ = store.get(ids[0])
    store.complete(started(store, first), None)
    stats = {s.queue: s for s in store.stats("")}
    assert (stats["emails"].available, stats["emails"].completed) == (4, 1)
    assert stats["conversions"].available == 1
    assert [s.queue for s in store.stats("conversions")] == ["conversions"]

    first_page, more = store.page("emails", 0, "", limit=3, offset=0)
    rest, no_more = store.page("emails", 0, "", limit=3, offset=3)
    assert more and not no_more
    assert [j.id for j in first_page + rest] == list(reversed(ids))  # newest first
    done, _ = store.page("", job_pb2.JOB_STATE_COMPLETED, "deliver_email", limit=10, offset=0)
    assert [j.id for j in done] == [ids[0]]
    conversions, _ = store.page("conversions", 0, "", limit=10, offset=0)
    assert [j.id for j in conversions] == [conversion.id]  # a conversion job is on its own queue
    by_actor, _ = store.page("", 0, "convert_image", limit=10, offset=0)
    assert [j.id for j in by_actor] == [conversion.id]


def test_page_tokens_round_trip_and_bad_ones_are_invalid() -> None:
    token = paging.next_page_token(50, 50, more=True)
    assert paging.page_offset(token) == 100
    assert paging.next_page_token(0, 50, more=False) == ""
    with pytest.raises(TwirpError) as bad:
        paging.page_offset("!!not-a-token")
    assert bad.value.meta == {"argument": "page_token"}


# Indexes as version 2 had them, which migration 3 drops: each is the first column of another.
PREFIX_INDEXES = {
    "jobrow_queue": ("jobs", "queue"),
    "jobrow_state": ("jobs", "state"),
    "jobeventrow_job_id": ("job_events", "job_id"),
}
FULL_SCAN = re.compile(r"^SCAN \w+$")  # a table (peewee calls it t1) read without any index


def index_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_an_older_database_loses_the_indexes_others_begin_with_and_every_read_uses_one(
    tmp_path: Path,
) -> None:
    settings = config.load({"MCSV_DATA_DIR": str(tmp_path)})
    url = settings.database_url_for(NAME)
    path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
    older = open_database(url)  # the schema as migration 2 left it, its indexes included
    create_tables(older, MODELS, service=NAME, migrations=MIGRATIONS[:2])
    with older.connection_context():
        for name, (table, column) in PREFIX_INDEXES.items():
            older.execute_sql(  # type: ignore[no-untyped-call]
                f'CREATE INDEX "{name}" ON "{table}" ("{column}")'
            )
    older.close_all()  # type: ignore[attr-defined]
    assert set(PREFIX_INDEXES) <= index_names(path)

    store = open_jobs(settings)
    assert not set(PREFIX_INDEXES) & index_names(path)
    job, _ = store.enqueue(EMAIL, email_args(), "e1")
    store.complete(started(store, job), None)

    statements: list[str] = []
    with store.database.connection_context():
        connection: sqlite3.Connection = store.database.connection()  # type: ignore[no-untyped-call]
        connection.set_trace_callback(statements.append)
        store.get(job.id)
        for queue, state, actor in [("emails", 0, ""), ("", job_pb2.JOB_STATE_COMPLETED, ""),
                                    ("emails", job_pb2.JOB_STATE_COMPLETED, ""),
                                    ("", 0, "deliver_email"), ("", 0, "")]:  # fmt: skip
            store.page(queue, state, actor, limit=10, offset=0)
        store.stats("emails")
        store.stats("")
        connection.set_trace_callback(None)
        reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
        assert len(reads) >= 9
        for sql in reads:
            plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert not [step for step in plan if FULL_SCAN.match(step)], (sql, plan)

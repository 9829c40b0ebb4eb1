"""job_svc's job table and history on a real SQLite database: idempotent enqueue, attempts,
retries then discard with every error kept, cancel and manual retry, stats and paging."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import common_pb2, job_pb2

from internal import config
from internal.services.common import paging
from internal.services.job_svc.models import CONVERSION, EMAIL, job_message
from internal.services.job_svc.store import JobStore, open_jobs


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    settings = config.load({"MCSV_DATA_DIR": str(tmp_path), "JOB_MAX_RETRIES": "2"})
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


def test_enqueue_is_idempotent_on_its_key(store: JobStore) -> None:
    first, created = store.enqueue(EMAIL, email_args(), "email:welcome:u1")
    again, created_again = store.enqueue(EMAIL, email_args(), "email:welcome:u1")
    assert created and not created_again
    assert first.id == again.id
    assert history(store, first.id) == ["ENQUEUED"]


def test_a_job_that_fails_is_retried_then_discarded_with_all_its_errors(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    for attempt in (1, 2, 3):
        running = store.start(job.id, "w:1")
        assert running is not None and running.attempt == attempt
        last = attempt == running.max_attempts
        store.fail(running, f"boom {attempt}", retry_in=None if last else 0.5)
    assert store.start(job.id, "w:1") is None  # discarded jobs never run again
    row, events = store.get(job.id)
    message = job_message(row)
    assert message.state == job_pb2.JOB_STATE_DISCARDED
    assert [e.message for e in message.errors] == ["boom 1", "boom 2", "boom 3"]
    assert message.email.recipient == "u1@example.com"
    assert history(store, job.id) == [
        "ENQUEUED",
        "STARTED", "FAILED", "RETRY_SCHEDULED",
        "STARTED", "FAILED", "RETRY_SCHEDULED",
        "STARTED", "FAILED", "DISCARDED",
    ]  # fmt: skip
    assert [e.sequence for e in events] == list(range(1, 11))


def test_a_completed_job_delivered_again_is_not_run(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = store.start(job.id, "w:1")
    assert running is not None
    store.complete(running)
    assert store.start(job.id, "w:2") is None
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "COMPLETED"]


def test_a_job_the_queue_gave_up_on_is_discarded_unless_it_finished(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    running = store.start(job.id, "w:1")
    assert running is not None
    store.fail(running, "boom", retry_in=0.5)
    discarded = store.discard(job.id, "given up by the job queue: boom")
    assert discarded is not None and discarded.state == job_pb2.JOB_STATE_DISCARDED
    assert store.discard(job.id, "again") is None  # finished: nothing changes
    assert store.discard("nope", "unknown") is None
    assert history(store, job.id) == ["ENQUEUED", "STARTED", "FAILED", "RETRY_SCHEDULED",
                                      "DISCARDED"]  # fmt: skip


def test_cancel_and_manual_retry(store: JobStore) -> None:
    job, _ = store.enqueue(EMAIL, email_args(), "k")
    with pytest.raises(TwirpError) as refused:
        store.retry(job.id)
    assert refused.value.code is ErrorCode.FAILED_PRECONDITION
    store.cancel(job.id, "changed my mind")
    assert store.start(job.id, "w:1") is None
    with pytest.raises(TwirpError) as again:
        store.cancel(job.id, "twice")
    assert again.value.code is ErrorCode.FAILED_PRECONDITION
    retried = store.retry(job.id)
    assert retried.state == job_pb2.JOB_STATE_AVAILABLE and retried.attempt == 0
    assert history(store, job.id) == ["ENQUEUED", "CANCELLED", "RETRIED"]
    with pytest.raises(TwirpError) as missing:
        store.get("nope")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_stats_and_pages(store: JobStore) -> None:
    ids = [store.enqueue(EMAIL, email_args(f"u{i}"), f"e{i}")[0].id for i in range(5)]
    conversion, _ = store.enqueue(CONVERSION, job_pb2.ConversionJobArgs(conversion_id="c"), "c")
    running = store.start(ids[0], "w:1")
    assert running is not None
    store.complete(running)
    stats = {s.queue: s for s in store.stats("")}
    assert (stats["emails"].available, stats["emails"].completed) == (4, 1)
    assert stats["conversions"].available == 1
    assert [s.queue for s in store.stats("conversions")] == ["conversions"]

    first, more = store.page("emails", 0, "", limit=3, offset=0)
    rest, no_more = store.page("emails", 0, "", limit=3, offset=3)
    assert more and not no_more
    assert [j.id for j in first + rest] == list(reversed(ids))  # newest first
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

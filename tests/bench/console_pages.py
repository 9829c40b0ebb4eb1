"""C1: every console page answers in under 1 s with 10,000 jobs stored (and as many
conversions and emails). The tables are seeded straight into the services' databases before
the system starts (finished jobs, each with its history of three events, so that nothing
runs), then each page is fetched through the console, signed in as the operator, as a
browser would: the overview (counts and health), the job list unfiltered, filtered and deep
in its pages, a job, conversions and the mailbox, and the relay's GetQueueStats that the
overview polls. Figure: each page's 95th percentile over repeated fetches.

    python -m tests.bench --only C1         (or: python -m tests.bench.console_pages)"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from mcsv.v1 import common_pb2, job_pb2, user_pb2

from internal import config
from internal.data import create_tables, open_database, write_transaction
from internal.services.common.paging import next_page_token
from internal.services.email_svc.models import EmailRow
from internal.services.job_svc.models import JobEventRow, JobRow
from internal.services.job_svc.store import open_jobs
from internal.services.user_svc.models import ConversionRow, open_users
from tests.bench.table import Row
from tests.e2e.system import system_env, whole_system

GOAL = "C1"
TARGET_MS = 1000.0
BATCH = 500
# How the seeded jobs are spread over the states (the rest completed).
STATES = [
    (job_pb2.JOB_STATE_DISCARDED, 0.05),
    (job_pb2.JOB_STATE_CANCELLED, 0.02),
    (job_pb2.JOB_STATE_AVAILABLE, 0.03),
]


def seed(settings: config.Settings, count: int) -> str:
    """`count` jobs (email, conversion and report jobs), conversions and emails, written
    before the services start; returns one job's id."""
    jobs = open_jobs(settings)
    now = time.time()
    email_args = job_pb2.EmailJobArgs(
        idempotency_key="k", user_id="u", user_name="Bench", recipient="bench@example.com",
        template=common_pb2.EMAIL_TEMPLATE_WELCOME,
    ).SerializeToString()  # fmt: skip
    job_rows, event_rows = [], []
    for n in range(count):
        state = job_pb2.JOB_STATE_COMPLETED
        cut = 0.0
        for candidate, share in STATES:
            cut += share
            if (n % 1000) / 1000 < cut:
                state = candidate
                break
        queue, actor = [("emails", "deliver_email"), ("conversions", "convert_image"),
                        ("reports", "report_outcome")][n % 3]  # fmt: skip
        args = email_args if actor == "deliver_email" else b""
        job_id = uuid.uuid4().hex
        at = now - (count - n)
        job_rows.append(
            {"id": job_id, "idempotency_key": f"bench:{n}", "queue": queue, "actor": actor,
             "state": state, "attempt": 1, "args": args, "inserted_at": at, "scheduled_at": at,
             "attempted_at": at, "finished_at": at + 0.5, "worker": "bench:1",
             "retry_until": at + 3600, "dispatch": 1, "sent": True, "dispatched_at": at,
             "errors": json.dumps([{"attempt": 1, "message": "unavailable: seeded",
                                    "failed_at": at}])
             if state == job_pb2.JOB_STATE_DISCARDED else "[]"}
        )  # fmt: skip
        for sequence, kind in enumerate((1, 2, 5), start=1):
            event_rows.append(
                {"job_id": job_id, "sequence": sequence, "type": kind, "occurred_at": at,
                 "attempt": 0 if sequence == 1 else 1, "message": "", "worker": "bench:1"}
            )  # fmt: skip
    with jobs.database.connection_context():
        for start in range(0, count, BATCH):
            with write_transaction(jobs.database):
                JobRow.insert_many(job_rows[start : start + BATCH]).execute()
                JobEventRow.insert_many(event_rows[3 * start : 3 * (start + BATCH)]).execute()

    users = open_users(settings.database_url_for("user_svc"))
    result = common_pb2.ConversionResult(
        source_bytes=123_456, pdf_bytes=98_765, page_width_points=595.0, page_height_points=842.0
    ).SerializeToString()
    options = common_pb2.ConversionOptions().SerializeToString()
    conversions = [
        {"id": uuid.uuid4().hex, "user_id": f"user-{n % 100}", "filename": f"scan-{n}.png",
         "options": options, "state": user_pb2.CONVERSION_STATE_SUCCEEDED, "job_id": "",
         "source_key": f"uploads/{n}.png", "source_bytes": 123_456,
         "pdf_url": f"http://storage.invalid/pdfs/{n}.pdf", "result": result,
         "created_at": now - (count - n), "finished_at": now - (count - n) + 1}
        for n in range(count)
    ]  # fmt: skip
    with users.connection_context():
        for start in range(0, count, BATCH):
            with write_transaction(users):
                ConversionRow.insert_many(conversions[start : start + BATCH]).execute()

    mailbox = open_database(settings.database_url_for("email_svc"))
    create_tables(mailbox, [EmailRow], service="email_svc")
    html = "<html><body>" + "<p>Welcome to mcsv, Bench.</p>" * 40 + "</body></html>"
    emails = [
        {"id": uuid.uuid4().hex, "idempotency_key": f"bench:{n}", "user_id": f"user-{n % 100}",
         "recipient": f"user-{n % 100}@example.com", "template": 1, "subject": "Welcome",
         "text_body": "Welcome to mcsv, Bench.", "html_body": html, "backend": 1,
         "delivered_at": now - (count - n)}
        for n in range(count)
    ]  # fmt: skip
    with mailbox.connection_context():
        for start in range(0, count, BATCH):
            with write_transaction(mailbox):
                EmailRow.insert_many(emails[start : start + BATCH]).execute()
    return str(job_rows[count // 2]["id"])


def pages(job_id: str, count: int) -> dict[str, str]:
    """What a browser asks for, by name: console paths (the relay's RPC is a POST)."""
    deep = next_page_token(max(count - 100, 0), 0, True)
    return {
        "overview (counts + health)": "/console",
        "jobs, unfiltered": "/console/jobs",
        "jobs, discarded": "/console/jobs?state=discarded",
        "jobs, emails completed": "/console/jobs?queue=emails&state=completed",
        f"jobs, page at offset {max(count - 100, 0)}": f"/console/jobs?page={deep}",
        "a job with its history": f"/console/jobs/{job_id}",
        "conversions": "/console/conversions",
        "conversions, succeeded": "/console/conversions?state=succeeded",
        "mailbox": "/console/emails",
        "relay GetQueueStats (live refresh)": "POST GetQueueStats",
    }


def measure(quick: bool) -> list[Row]:
    count = 500 if quick else 10_000
    repeats = 3 if quick else 20
    data_dir = Path(tempfile.mkdtemp(prefix="mcsv-bench-console-"))
    env = system_env(data_dir)
    settings = config.load(env)
    job_id = seed(settings, count)
    rows: list[Row] = []
    with whole_system(data_dir, workers=0, env=env) as system:
        console = system.settings.url("console")
        with httpx.Client(base_url=console, timeout=30) as browser:
            signed_in = browser.post("/console/login", data={"token": settings.operator_token})
            assert signed_in.status_code == 303, signed_in.text
            for name, path in pages(job_id, count).items():
                timings = []
                for attempt in range(repeats + 2):  # the first two warm up
                    started = time.perf_counter()
                    if path.startswith("POST "):
                        answer = browser.post(
                            f"/console/twirp/mcsv.v1.JobService/{path.removeprefix('POST ')}",
                            json={},
                        )
                    else:
                        answer = browser.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert answer.status_code == 200, (path, answer.status_code, answer.text)
                    if attempt >= 2:
                        timings.append(elapsed)
                p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
                rows.append(
                    Row(
                        goal=GOAL,
                        figure=f"console {name}, p95 of {repeats} ({count:,} jobs)",
                        value=p95,
                        unit="ms",
                        target=f"< {TARGET_MS:.0f} ms",
                        met=p95 < TARGET_MS,
                        peer="median",
                        peer_value=statistics.median(timings),
                    )
                )
    return rows


if __name__ == "__main__":
    from tests.bench.table import render

    measured = measure("--quick" in sys.argv)
    print(render(measured))
    sys.exit(0 if all(row.met for row in measured) else 1)

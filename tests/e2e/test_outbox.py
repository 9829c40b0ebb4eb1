"""user_svc's outbox end to end (real processes, real signals, the embedded defaults): users
and uploads accepted while job_svc is down complete once it is back; user_svc SIGKILLed over
and over under load leaves no user without exactly one welcome email, and emails no one who
does not exist; the load client rides out a restarting user_svc; and a job job_svc refuses
for good fails its conversion, reported as any failed conversion is."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import peewee
import pytest
from mcsv.twirp import TwirpError
from mcsv.v1 import common_pb2, email_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal.data import open_database, write_transaction
from internal.services.user_svc import outbox
from internal.services.user_svc.models import ConversionRow, UserRow
from internal.services.user_svc.outbox import OutboxRow
from internal.supervisor import ROOT, System
from tests.e2e.images import make_image
from tests.e2e.system import CONVERSION, EMAIL, as_user, peer, succeeded, wait_for, whole_system

pytestmark = pytest.mark.slow

# Restarts quick enough for a kill loop, within the supervisor's limit.
FAST_RESTARTS = {"SUPERVISOR_MIN_BACKOFF_MS": "100", "SUPERVISOR_MAX_BACKOFF_MS": "400"}


def user_db(system: System) -> peewee.Database:
    """user_svc's own database, read as the test's witness of what exists."""
    database = open_database(system.settings.database_url_for("user_svc"))
    database.bind([UserRow, ConversionRow, OutboxRow])
    return database


def stored_users(system: System) -> set[str]:
    database = user_db(system)
    with database.connection_context():
        return {row.id for row in UserRow.select(UserRow.id)}


def welcome_emails(system: System) -> collections.Counter[str]:
    """How many welcome emails email_svc holds per user id."""
    counts: collections.Counter[str] = collections.Counter()
    with peer(system.settings, EmailServiceClient) as emails:
        token = ""
        while True:
            page = emails.list_emails(email_pb2.ListEmailsRequest(page_size=1000, page_token=token))
            counts.update(
                e.user_id for e in page.emails if e.template == common_pb2.EMAIL_TEMPLATE_WELCOME
            )
            token = page.next_page_token
            if not token:
                return counts


def welcome_jobs(system: System) -> collections.Counter[str]:
    """How many welcome-email jobs job_svc holds per user id."""
    counts: collections.Counter[str] = collections.Counter()
    with peer(system.settings, JobServiceClient) as jobs:
        token = ""
        while True:
            page = jobs.list_jobs(
                job_pb2.ListJobsRequest(actor="deliver_email", page_size=1000, page_token=token)
            )
            counts.update(
                j.email.user_id
                for j in page.jobs
                if j.email.template == common_pb2.EMAIL_TEMPLATE_WELCOME
            )
            token = page.next_page_token
            if not token:
                return counts


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def kill_user_svc(system: System) -> None:
    """SIGKILL from outside (not System.kill, which is on purpose), and wait until the
    supervisor has it answering again."""
    before = system.pid("user_svc")
    os.kill(before, signal.SIGKILL)
    url = system.settings.url("user_svc")
    deadline = time.monotonic() + 60
    while not (system.pid("user_svc") != before and answers(url)):
        system.check_alive()
        assert time.monotonic() < deadline, "user_svc did not come back"
        time.sleep(0.05)


def when(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.05)


def test_users_and_uploads_accepted_while_job_svc_is_down_complete_once_it_is_back(
    tmp_path: Path,
) -> None:
    with whole_system(tmp_path, workers=1) as system:
        system.kill("job_svc", signal.SIGKILL)
        with peer(system.settings, UserServiceClient) as users:
            created = [
                users.create_user(
                    user_pb2.CreateUserRequest(name=f"Down {i}", email=f"down{i}@example.com")
                )
                for i in range(20)
            ]
            owner = created[0].user
            uploads = [
                users.convert_image(
                    user_pb2.ConvertImageRequest(
                        user_id=owner.id,
                        filename=f"down-{i}.png",
                        image_data=make_image("png", 320, 240, seed=i),
                        options=common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_LOW),
                        idempotency_key=f"down-{i}",
                    ),
                    headers=as_user(system.settings, owner.id),
                ).conversion
                for i in range(3)
            ]
            assert all(c.job_id == "" for c in created)  # answered OK; the jobs are owed
            assert all(u.job_id == "" and u.state == user_pb2.CONVERSION_STATE_PENDING
                       for u in uploads)  # fmt: skip
            time.sleep(2)  # the relay retries meanwhile

            job_svc = system.children["job_svc"]
            system.start_child("job_svc", job_svc.argv, job_svc.env, probe=job_svc.probe)
            user_ids = {c.user.id for c in created}
            welcomed = wait_for(system, EMAIL, user_ids, timeout=120)
            converted = wait_for(system, CONVERSION, {u.id for u in uploads}, timeout=120)
            assert all(succeeded(n) for n in [*welcomed.values(), *converted.values()])
            for upload in uploads:  # the job the relay enqueued is on record
                now = users.get_conversion(user_pb2.GetConversionRequest(id=upload.id))
                assert now.conversion.job_id
        assert welcome_emails(system) == collections.Counter(user_ids)  # one each
        assert welcome_jobs(system) == collections.Counter(user_ids)


def test_user_svc_killed_in_a_loop_under_load_emails_every_stored_user_once(
    tmp_path: Path,
) -> None:
    with whole_system(tmp_path, workers=2, env=FAST_RESTARTS, restart=True) as system:
        stop = threading.Event()
        answered: list[str] = []
        errors: list[str] = []

        def create_users(thread: int) -> None:
            """Each user asked for once, no retries: an error may or may not have left one."""
            with peer(system.settings, UserServiceClient) as users:
                for n in range(10_000):
                    if stop.is_set():
                        return
                    request = user_pb2.CreateUserRequest(
                        name=f"K {thread}-{n}", email=f"k{thread}-{n}@example.com"
                    )
                    try:
                        answered.append(users.create_user(request).user.id)
                    except TwirpError as exc:
                        errors.append(exc.code.value)
                        time.sleep(0.05)

        load = [threading.Thread(target=create_users, args=(t,)) for t in range(6)]
        for thread in load:
            thread.start()
        try:
            for _ in range(4):
                time.sleep(0.7)
                kill_user_svc(system)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in load:
                thread.join()

        users = stored_users(system)
        assert set(answered) <= users and len(users) > 50, (len(answered), len(users))
        welcomed = wait_for(system, EMAIL, users, timeout=180)
        assert all(succeeded(n) for n in welcomed.values())
        # Exactly one job and one email per stored user, and none for anyone else.
        assert welcome_jobs(system) == collections.Counter(users)
        assert welcome_emails(system) == collections.Counter(users)
        print(f"{len(users)} users; {len(answered)} answered; {collections.Counter(errors)}")

    log = (tmp_path / "system.log").read_text()
    assert log.count("user_svc killed by SIGKILL") == 4


def test_the_load_client_rides_out_a_restarting_user_svc(tmp_path: Path) -> None:
    with whole_system(tmp_path, workers=2, env=FAST_RESTARTS, restart=True) as system:
        argv = [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "load",
                "--users", "400", "--images", "6", "--concurrency", "8", "--quiet",
                "--timeout", "240"]  # fmt: skip
        run = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **system.env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:

            def users_or_done(count: int) -> Callable[[], bool]:
                return lambda: len(stored_users(system)) >= count or run.poll() is not None

            for seen in (60, 200):  # mid-run: once users are being created, then again
                when(users_or_done(seen))
                assert run.poll() is None, "the load ended before user_svc was killed"
                kill_user_svc(system)
            output, _ = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
    assert (tmp_path / "system.log").read_text().count("user_svc killed by SIGKILL") == 2
    summary = dict(re.findall(r"^(welcome emails|conversions): (.*)$", output, re.MULTILINE))
    assert summary["welcome emails"].startswith("401 started, 401 completed, 0 failed, 0 missing")
    assert summary["conversions"].startswith("6 started, 6 completed, 0 failed, 0 missing")
    assert "refused" not in output and run.returncode == 0, output


def test_a_conversion_job_svc_refuses_for_good_fails_and_is_reported(tmp_path: Path) -> None:
    with whole_system(tmp_path, workers=1) as system:
        with peer(system.settings, UserServiceClient) as users:
            owner = users.create_user(
                user_pb2.CreateUserRequest(name="Refused", email="refused@example.com")
            ).user
            # As if user_svc had committed a conversion whose job job_svc cannot take (no
            # URLs): job_svc answers invalid_argument, however often it is asked.
            broken = job_pb2.EnqueueConversionRequest(
                args=job_pb2.ConversionJobArgs(
                    conversion_id="c-refused", user_id=owner.id, user_email=owner.email
                )
            )
            database = user_db(system)
            with database.connection_context(), write_transaction(database):
                ConversionRow.create(
                    id="c-refused", user_id=owner.id, filename="x.png",
                    options=common_pb2.ConversionOptions().SerializeToString(),
                    state=user_pb2.CONVERSION_STATE_PENDING, source_key="uploads/c-refused/x.png",
                    source_bytes=1, created_at=time.time(),
                )  # fmt: skip
                request = broken.SerializeToString()
                outbox.add(outbox.CONVERSION, "conversion:c-refused", "c-refused", request, {}, 0)

            report = wait_for(system, CONVERSION, {"c-refused"})["c-refused"].conversion_finished
            assert report.outcome == common_pb2.OUTCOME_FAILED and report.user_id == owner.id
            assert report.error.startswith("the conversion job could not be enqueued: ")
            assert "invalid_argument" in report.error
            conversion = users.get_conversion(user_pb2.GetConversionRequest(id="c-refused"))
            assert conversion.conversion.state == user_pb2.CONVERSION_STATE_FAILED
        with database.connection_context():
            when(lambda: OutboxRow.get_by_id("conversion:c-refused").state == outbox.FAILED)
            assert "args.source_url" in OutboxRow.get_by_id("conversion:c-refused").error

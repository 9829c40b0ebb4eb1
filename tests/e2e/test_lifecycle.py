"""The job lifecycle on the whole system (real processes, real signals, the embedded
defaults): an outage longer than the RPC timeout and the old retry budget delays work but
fails none; a job that fails at its retry horizon and is retried by hand ends with its
latest outcome at the client; a failed conversion keeps its upload for that retry; a
repeated enqueue sends no second message; a cancelled job is reported cancelled; and a job
whose report is being retried holds up no other work."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from mcsv.v1 import common_pb2, job_pb2, user_pb2
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal.queue import SQLiteBroker, sqlite_path
from internal.storage import open_storage
from internal.supervisor import System
from tests.e2e.images import make_image
from tests.e2e.system import (
    CONVERSION,
    EMAIL,
    as_user,
    bring_back,
    history,
    latest,
    outcome,
    paused,
    peer,
    succeeded,
    version,
    wait_job,
    whole_system,
)

pytestmark = pytest.mark.slow

FAILED, CANCELLED = common_pb2.OUTCOME_FAILED, common_pb2.OUTCOME_CANCELLED
# A job used to be given 6 attempts (JOB_MAX_RETRIES=5) before it was discarded.
OLD_ATTEMPTS = 6
FINAL = (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_DISCARDED, job_pb2.JOB_STATE_CANCELLED)


def create_user(users: UserServiceClient, name: str) -> user_pb2.CreateUserResponse:
    return users.create_user(
        user_pb2.CreateUserRequest(name=name, email=f"{name.lower().replace(' ', '-')}@example.com")
    )


def convert(
    system: System, users: UserServiceClient, owner: str, name: str, image: bytes | None = None
) -> user_pb2.Conversion:
    """Uploads an image as its owner (their API token)."""
    return users.convert_image(
        user_pb2.ConvertImageRequest(
            user_id=owner, filename=name, image_data=image or make_image("png", 64, 48)
        ),
        headers=as_user(system.settings, owner),
    ).conversion


def discarded_jobs(jobs: JobServiceClient) -> str:
    """The discarded jobs with their history, for a failing assertion's message."""
    listed = jobs.list_jobs(
        job_pb2.ListJobsRequest(state=job_pb2.JOB_STATE_DISCARDED, page_size=100)
    ).jobs
    return "\n".join(str(jobs.get_job(job_pb2.GetJobRequest(id=job.id))) for job in listed)


def most_attempts(jobs: JobServiceClient, queue: str) -> int:
    listed = jobs.list_jobs(job_pb2.ListJobsRequest(queue=queue, page_size=1000)).jobs
    return max((job.attempt for job in listed), default=0)


def test_an_outage_longer_than_the_rpc_timeout_and_the_old_retry_budget_fails_nothing(
    tmp_path: Path,
) -> None:
    """email_svc hangs (SIGSTOP): every attempt that needs it waits out the RPC timeout
    (deadline_exceeded) and is retried; the outage lasts until some job has been tried more
    often than the old budget allowed. Once email_svc runs again, every welcome email and
    conversion completes, and no job was discarded."""
    with (
        whole_system(
            tmp_path, RPC_TIMEOUT_SECONDS="2", JOB_MIN_BACKOFF_MS="200", JOB_MAX_BACKOFF_MS="1000",
            JOB_RETRY_HORIZON_SECONDS="120",
        ) as system,
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):  # fmt: skip
        owner = create_user(users, "Owner").user
        latest(system, EMAIL, {owner.id}, succeeded)
        with paused(system, "email_svc"):
            created = [create_user(users, f"Outage {i}") for i in range(10)]
            converted = {convert(system, users, owner.id, f"outage-{i}.png").id for i in range(2)}
            deadline = time.monotonic() + 120
            while most_attempts(jobs, "emails") <= OLD_ATTEMPTS:
                assert time.monotonic() < deadline, "the jobs were not retried"
                time.sleep(0.5)
            waiting = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
            assert not any(queue.discarded for queue in waiting), discarded_jobs(jobs)

        emails = latest(system, EMAIL, {answer.user.id for answer in created}, succeeded)
        conversions = latest(system, CONVERSION, converted, succeeded)
        assert all(version(n) > 0 for n in [*emails.values(), *conversions.values()])
        for queue in jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues:
            assert queue.discarded == 0, queue
        for answer in created:
            retried = wait_job(jobs, answer.job_id, FINAL)
            assert retried.job.state == job_pb2.JOB_STATE_COMPLETED
            assert "deadline_exceeded" in retried.job.errors[0].message
            assert history(retried).count("FAILED") == len(retried.job.errors) >= 1


def test_a_job_failed_at_its_horizon_and_retried_by_hand_ends_with_its_latest_outcome(
    tmp_path: Path,
) -> None:
    """email_svc and image_svc are down for longer than the (short) retry horizon: the
    welcome email and the conversion are discarded, and the client hears FAILED. Back up,
    RetryJob runs each again: the client's latest notification of each workflow is
    SUCCEEDED (a higher version, seen again by pollers), and the conversion, whose upload was
    kept, produced its PDF. A permanent error, meanwhile, is not retried at all."""
    with (
        whole_system(tmp_path, workers=1, JOB_RETRY_HORIZON_SECONDS="3") as system,
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):
        system.kill("email_svc", signal.SIGTERM)
        system.kill("image_svc", signal.SIGTERM)
        created = create_user(users, "Late")
        conversion = convert(system, users, created.user.id, "late.png")
        failed_email = latest(system, EMAIL, {created.user.id}, lambda n: outcome(n) == FAILED)
        failed_pdf = latest(system, CONVERSION, {conversion.id}, lambda n: outcome(n) == FAILED)
        for job_id in (created.job_id, conversion.job_id):
            discarded = wait_job(jobs, job_id, FINAL)
            assert discarded.job.state == job_pb2.JOB_STATE_DISCARDED
            assert discarded.job.attempt > 1  # retried until the horizon
            assert "unavailable" in discarded.job.errors[-1].message
        kept = users.get_conversion(user_pb2.GetConversionRequest(id=conversion.id)).conversion
        assert kept.state == user_pb2.CONVERSION_STATE_FAILED and kept.upload_kept_until.seconds
        settings = system.settings
        store = open_storage(
            settings.storage_url,
            public_url=settings.storage_public_url,
            secret=settings.storage_secret,
        )
        upload = f"uploads/{conversion.id}/late.png"
        assert store.exists(upload)

        bring_back(system, "email_svc", "image_svc")
        for job_id in (created.job_id, conversion.job_id):
            retried = jobs.retry_job(job_pb2.RetryJobRequest(id=job_id)).job
            assert retried.state == job_pb2.JOB_STATE_AVAILABLE
        email_now = latest(system, EMAIL, {created.user.id}, succeeded)[created.user.id]
        pdf_now = latest(system, CONVERSION, {conversion.id}, succeeded)[conversion.id]
        for before, now in ((failed_email[created.user.id], email_now),
                            (failed_pdf[conversion.id], pdf_now)):  # fmt: skip
            assert now.notification_id == before.notification_id
            assert version(now) > version(before) and now.sequence > before.sequence
        done = users.get_conversion(user_pb2.GetConversionRequest(id=conversion.id)).conversion
        assert done.state == user_pb2.CONVERSION_STATE_SUCCEEDED and done.pdf_url
        assert not done.HasField("upload_kept_until")
        assert store.exists(f"pdfs/{conversion.id}.pdf") and not store.exists(upload)

        broken = convert(system, users, created.user.id, "broken.png", b"\x89PNG not an image")
        report = latest(system, CONVERSION, {broken.id}, lambda n: outcome(n) == FAILED)
        assert "refused" in report[broken.id].conversion_finished.error
        refused = wait_job(jobs, broken.job_id, FINAL)
        assert history(refused) == ["ENQUEUED", "STARTED", "FAILED", "DISCARDED"]  # one attempt


def broker_of(system: System) -> SQLiteBroker:
    return SQLiteBroker(sqlite_path(system.settings.broker_url))


def test_a_repeated_enqueue_of_a_waiting_job_sends_no_second_message(tmp_path: Path) -> None:
    """No worker runs yet, so the job waits: enqueued five times, it has one message, and
    once a worker starts it runs once."""
    with (
        whole_system(tmp_path, workers=0) as system,
        peer(system.settings, JobServiceClient) as jobs,
        peer(system.settings, JobServiceClient, identity="user_svc") as enqueuer,
    ):
        args = job_pb2.EmailJobArgs(
            idempotency_key="welcome:repeat", user_id="u-repeat", user_name="Re Peat",
            recipient="repeat@example.com", template=common_pb2.EMAIL_TEMPLATE_WELCOME,
        )  # fmt: skip
        answers = [enqueuer.enqueue_email(job_pb2.EnqueueEmailRequest(args=args)) for _ in range(5)]
        assert len({answer.job.id for answer in answers}) == 1
        broker = broker_of(system)
        try:
            assert broker.message_counts("emails").ready == 1
            system.start_worker(1)
            done = wait_job(jobs, answers[0].job.id, FINAL)
            assert done.job.state == job_pb2.JOB_STATE_COMPLETED and done.job.attempt == 1
            assert history(done) == ["ENQUEUED", "STARTED", "COMPLETED"]
            again = enqueuer.enqueue_email(job_pb2.EnqueueEmailRequest(args=args)).job
            assert again.id == done.job.id and again.state == job_pb2.JOB_STATE_COMPLETED
            assert broker.message_counts("emails").ready == 0  # nothing sent for it
        finally:
            broker.close()


def test_cancelling_a_waiting_job_tells_the_client_it_was_cancelled(tmp_path: Path) -> None:
    """email_svc is down and retries wait at least 20 s: the welcome job waits for its second
    attempt when it is cancelled, and the client hears CANCELLED; it is not tried again."""
    with (
        whole_system(tmp_path, workers=1, JOB_MIN_BACKOFF_MS="20000",
                     JOB_MAX_BACKOFF_MS="40000") as system,
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):  # fmt: skip
        system.kill("email_svc", signal.SIGTERM)
        created = create_user(users, "Cancelled")
        waiting = wait_job(jobs, created.job_id, [job_pb2.JOB_STATE_RETRYABLE])
        assert waiting.job.scheduled_at.ToSeconds() > time.time()
        jobs.cancel_job(job_pb2.CancelJobRequest(id=created.job_id, reason="not wanted"))
        heard = latest(system, EMAIL, {created.user.id}, lambda n: outcome(n) == CANCELLED)
        delivery = heard[created.user.id].email_delivered
        assert (delivery.job_id, delivery.error) == (created.job_id, "not wanted")
        job = jobs.get_job(job_pb2.GetJobRequest(id=created.job_id))
        assert job.job.state == job_pb2.JOB_STATE_CANCELLED and job.job.attempt == 1
        assert history(job)[-1] == "CANCELLED"


def test_a_report_being_retried_holds_up_no_other_work(tmp_path: Path) -> None:
    """One worker with one thread; client_svc is down, so the report of a failed conversion
    cannot be delivered and waits at least 20 s for its next attempt. A welcome email
    created meanwhile is delivered while that report is still being retried (a worker that
    slept between report attempts would hold it up); both reach the client once it is back."""
    with (
        whole_system(tmp_path, workers=1, worker_threads=1, JOB_MIN_BACKOFF_MS="20000",
                     JOB_MAX_BACKOFF_MS="40000") as system,
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):  # fmt: skip
        owner = create_user(users, "Reporter").user
        latest(system, EMAIL, {owner.id}, succeeded)
        system.kill("client_svc", signal.SIGTERM)
        broken = convert(system, users, owner.id, "broken.png", b"\x89PNG not an image")
        wait_job(jobs, broken.job_id, [job_pb2.JOB_STATE_DISCARDED])
        (report_job,) = [
            job
            for job in jobs.list_jobs(job_pb2.ListJobsRequest(queue="reports")).jobs
            if job.report.conversion_finished.conversion_id == broken.id
        ]
        retrying = wait_job(jobs, report_job.id, [job_pb2.JOB_STATE_RETRYABLE])
        assert "unavailable" in retrying.job.errors[0].message

        created = create_user(users, "Not Delayed")
        welcome = wait_job(jobs, created.job_id, FINAL)
        assert welcome.job.state == job_pb2.JOB_STATE_COMPLETED
        still = jobs.get_job(job_pb2.GetJobRequest(id=report_job.id)).job
        assert still.state == job_pb2.JOB_STATE_RETRYABLE and still.attempt == 1
        # The welcome's own report, made before its success was recorded, failed the same
        # way and waits for its next attempt.
        (welcome_report,) = [
            job
            for job in jobs.list_jobs(job_pb2.ListJobsRequest(queue="reports")).jobs
            if job.report.email_delivered.job_id == created.job_id
        ]
        assert welcome_report.state == job_pb2.JOB_STATE_RETRYABLE
        assert "unavailable" in welcome_report.errors[0].message
        assert history(jobs.get_job(job_pb2.GetJobRequest(id=welcome_report.id))) == [
            "ENQUEUED", "STARTED", "FAILED", "RETRY_SCHEDULED",
        ]  # fmt: skip

        bring_back(system, "client_svc")
        assert outcome(latest(system, CONVERSION, {broken.id}, lambda n: True)[broken.id]) == FAILED
        latest(system, EMAIL, {created.user.id}, succeeded)

"""Nothing is lost when parts fail: a job worker SIGKILLed in the middle of jobs, email_svc
down for a while, and a job the queue gives up on. Real processes, real signals."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from mcsv.v1 import common_pb2, email_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal.queue import SQLiteBroker, sqlite_path
from tests.e2e.backends import BACKENDS, backend_env
from tests.e2e.images import make_image
from tests.e2e.system import (
    CONVERSION,
    EMAIL,
    as_user,
    history,
    paused,
    peer,
    succeeded,
    wait_for,
    wait_job,
    whole_system,
)

pytestmark = pytest.mark.slow


def event_names(events: Iterable[job_pb2.JobEvent]) -> list[str]:
    return [job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in events]


def events(jobs: JobServiceClient, job_id: str) -> list[str]:
    answer = jobs.get_job(job_pb2.GetJobRequest(id=job_id))
    return [
        job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in answer.events
    ]


def final_history(jobs: JobServiceClient, job_id: str, timeout: float = 30) -> list[str]:
    """A job's history once it has completed, been discarded or been cancelled."""
    deadline = time.monotonic() + timeout
    while True:
        answer = jobs.get_job(job_pb2.GetJobRequest(id=job_id))
        history = [
            job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in answer.events
        ]
        if history[-1] in ("COMPLETED", "DISCARDED", "CANCELLED") or time.monotonic() > deadline:
            return history
        time.sleep(0.05)


def wait_until_executing(jobs: JobServiceClient, queue: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest(queue=queue)).queues
        if stats and stats[0].executing > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {queue} job started within {timeout}s")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_killed_mid_job_loses_nothing(
    tmp_path: Path, s3_endpoint: str, backend: str
) -> None:
    with (
        backend_env(backend, s3_endpoint) as env,
        whole_system(tmp_path, workers=1, env=env, JOB_VISIBILITY_TIMEOUT_SECONDS="3") as system,
    ):
        settings = system.settings
        with (
            peer(settings, UserServiceClient) as users,
            peer(settings, JobServiceClient) as jobs,
        ):
            owner = users.create_user(
                user_pb2.CreateUserRequest(name="Owner", email="owner@example.com")
            ).user
            # Made first, so that the uploads follow each other and the jobs queue up.
            images = [make_image("png", 3000, 2250, seed=i) for i in range(6)]
            conversions = {
                users.convert_image(
                    user_pb2.ConvertImageRequest(
                        user_id=owner.id,
                        filename=f"big-{i}.png",
                        image_data=images[i],
                        options=common_pb2.ConversionOptions(
                            quality=common_pb2.PDF_QUALITY_LOSSLESS
                        ),
                    ),
                    headers=as_user(system.settings, owner.id),
                ).conversion.id: i
                for i in range(6)
            }
            welcomed = {
                users.create_user(
                    user_pb2.CreateUserRequest(name=f"W {i}", email=f"w{i}@example.com")
                ).user.id
                for i in range(30)
            }
            wait_until_executing(jobs, "conversions")
            system.kill("worker-1", signal.SIGKILL)  # mid-job: no chance to finish or ack
            # A transaction the worker had sent its COMMIT for as it died still lands, a moment
            # later on PostgreSQL (a commit shows once its WAL is flushed): let those settle.
            time.sleep(1)
            # The jobs the dead worker was running are still marked as executing.
            interrupted = {
                job.id
                for job in jobs.list_jobs(
                    job_pb2.ListJobsRequest(state=job_pb2.JOB_STATE_EXECUTING)
                ).jobs
            }
            assert interrupted, "the worker was killed between jobs; nothing to redeliver"
            system.start_worker(2)

            finished = wait_for(system, CONVERSION, set(conversions), timeout=180)
            welcomes = wait_for(system, EMAIL, welcomed | {owner.id}, timeout=180)
            assert all(succeeded(r) for r in finished.values())
            assert all(succeeded(r) for r in welcomes.values())

            job_ids = {
                users.get_conversion(user_pb2.GetConversionRequest(id=c)).conversion.job_id
                for c in conversions
            }
            # The client hears of a conversion just before its worker records it completed.
            histories = {job_id: final_history(jobs, job_id) for job_id in job_ids}
            unfinished = {j: h for j, h in histories.items() if h[-1] != "COMPLETED"}
            assert not unfinished, json.dumps(unfinished)
            # Each interrupted job ran again: delivered again by the queue or, a report whose
            # first attempt the dead worker made in place, sent by job_svc after its RPC
            # timeout.
            for job_id in interrupted:
                history = final_history(jobs, job_id, timeout=120)
                assert history[-1] == "COMPLETED" and history.count("STARTED") == 2, history

        with peer(settings, EmailServiceClient) as emails:
            sent = emails.list_emails(
                email_pb2.ListEmailsRequest(user_id=owner.id, page_size=1000)
            ).emails
        per_template = [e.template for e in sent]
        assert per_template.count(common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE) == 6  # once each
        assert per_template.count(common_pb2.EMAIL_TEMPLATE_WELCOME) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_jobs_retry_while_email_svc_is_down_and_complete_once_it_is_back(
    tmp_path: Path, s3_endpoint: str, backend: str
) -> None:
    with (
        backend_env(backend, s3_endpoint) as env,
        whole_system(tmp_path, workers=2, env=env) as system,
    ):
        settings = system.settings
        system.kill("email_svc", signal.SIGTERM)
        with (
            peer(settings, UserServiceClient) as users,
            peer(settings, JobServiceClient) as jobs,
        ):
            created = [
                users.create_user(
                    user_pb2.CreateUserRequest(name=f"Down {i}", email=f"down{i}@example.com")
                )
                for i in range(10)
            ]
            time.sleep(3)  # attempts fail and are retried with backoff while email_svc is down
            failing = [events(jobs, c.job_id) for c in created]
            assert all("FAILED" in h and "RETRY_SCHEDULED" in h for h in failing), failing
            assert all("COMPLETED" not in h for h in failing)

            system.start_child("email_svc", system.children["email_svc"].argv)
            arrived = wait_for(system, EMAIL, {c.user.id for c in created}, timeout=120)
            assert all(succeeded(r) for r in arrived.values())

            for answer in created:
                final_history(jobs, answer.job_id)  # recorded just after the client hears
                job = jobs.get_job(job_pb2.GetJobRequest(id=answer.job_id))
                history = [
                    job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_")
                    for e in job.events
                ]
                assert history[-1] == "COMPLETED"
                assert history.count("FAILED") >= 1 and history.count("FAILED") == len(
                    job.job.errors
                )
                assert "unavailable" in job.job.errors[0].message
                assert job.job.state == job_pb2.JOB_STATE_COMPLETED


def test_a_job_whose_message_the_queue_gives_up_on_is_discarded_and_reported_failed(
    tmp_path: Path,
) -> None:
    """The SQLite broker delivers a message at most once here (JOB_MAX_DELIVERIES=1). The
    welcome job's worker is SIGKILLed mid-attempt (email_svc hangs, so the attempt waits);
    the next worker is delivered the message again, the broker gives it up, and the job is
    discarded and the client told the welcome email failed, instead of the job staying
    EXECUTING forever."""
    with whole_system(
        tmp_path, workers=1, JOB_MAX_DELIVERIES="1", JOB_VISIBILITY_TIMEOUT_SECONDS="2",
        RPC_TIMEOUT_SECONDS="60",
    ) as system:  # fmt: skip
        with (
            peer(system.settings, UserServiceClient) as users,
            peer(system.settings, JobServiceClient) as jobs,
        ):
            with paused(system, "email_svc"):
                created = users.create_user(
                    user_pb2.CreateUserRequest(name="Given Up", email="given-up@example.com")
                )
                wait_until_executing(jobs, "emails")
                system.kill("worker-1", signal.SIGKILL)
            system.start_worker(2)
            received = wait_for(system, EMAIL, {created.user.id}, timeout=60)
            job = wait_job(jobs, created.job_id, [job_pb2.JOB_STATE_DISCARDED])
        broker = SQLiteBroker(sqlite_path(system.settings.broker_url))
        try:
            (dead,) = broker.dead_letters("emails")
        finally:
            broker.close()
    delivery = received[created.user.id].email_delivered
    assert delivery.outcome == common_pb2.OUTCOME_FAILED and delivery.job_id == created.job_id
    assert "DeliveryLimitExceeded" in delivery.error
    assert history(job) == ["ENQUEUED", "STARTED", "DISCARDED"]
    assert job.events[-1].message.startswith("given up by the job queue: ")
    assert dead.reason.startswith("DeliveryLimitExceeded") and dead.deliveries == 2

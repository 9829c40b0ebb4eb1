"""email_svc delivering over SMTP (a real aiosmtpd server, with AUTH) instead of the mailbox,
and the job-management RPCs on a running system."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import email_pb2, job_pb2, user_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from tests.e2e.system import CONVERSION, EMAIL, as_user, peer, succeeded, wait_for, whole_system
from tests.mail.smtp_server import PASSWORD, USERNAME, smtp_server

pytestmark = pytest.mark.slow


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # on purpose
def test_welcome_emails_go_out_over_smtp(tmp_path: Path) -> None:
    with smtp_server(require_auth=True) as server:
        mail_url = f"smtp://{USERNAME}:{PASSWORD}@127.0.0.1:{server.port}"
        sender = "mcsv <hello@mcsv.test>"
        with whole_system(tmp_path, MAIL_URL=mail_url, MAIL_FROM=sender) as system:
            with peer(system.settings, UserServiceClient) as users:
                created = [
                    users.create_user(
                        user_pb2.CreateUserRequest(name=f"Smtp {i}", email=f"smtp{i}@example.com")
                    ).user
                    for i in range(5)
                ]
            arrived = wait_for(system, EMAIL, {u.id for u in created})
            assert all(succeeded(r) for r in arrived.values())
            with peer(system.settings, EmailServiceClient) as emails:
                listed = emails.list_emails(email_pb2.ListEmailsRequest()).emails
            assert {e.backend for e in listed} == {email_pb2.DELIVERY_BACKEND_SMTP}
        by_recipient = {r.rcpt_tos[0]: r for r in server.received}
        assert set(by_recipient) == {u.email for u in created}  # one each, no duplicates
        assert len(server.received) == 5
        for user in created:
            received = by_recipient[user.email]
            assert received.login == USERNAME
            assert received.message["From"] == sender
            text = received.message.get_body(preferencelist=("plain",))
            assert text is not None and user.name in text.get_content()


def test_cancel_retry_list_and_history_over_rpc(tmp_path: Path) -> None:
    with (
        whole_system(tmp_path) as system,
        peer(system.settings, UserServiceClient) as users,
        peer(system.settings, JobServiceClient) as jobs,
    ):
        owner = users.create_user(user_pb2.CreateUserRequest(name="Jo", email="jo@example.com"))
        wait_for(system, EMAIL, {owner.user.id})
        done = jobs.get_job(job_pb2.GetJobRequest(id=owner.job_id))
        assert done.job.state == job_pb2.JOB_STATE_COMPLETED
        assert [job_pb2.JobEventType.Name(e.type) for e in done.events] == [
            "JOB_EVENT_TYPE_ENQUEUED", "JOB_EVENT_TYPE_STARTED", "JOB_EVENT_TYPE_COMPLETED",
        ]  # fmt: skip
        assert done.job.email.recipient == "jo@example.com" and done.job.worker

        with pytest.raises(TwirpError) as refused:
            jobs.cancel_job(job_pb2.CancelJobRequest(id=owner.job_id))
        assert refused.value.code is ErrorCode.FAILED_PRECONDITION

        broken = users.convert_image(
            user_pb2.ConvertImageRequest(
                user_id=owner.user.id, filename="x.png", image_data=b"not an image"
            ),
            headers=as_user(system.settings, owner.user.id),
        ).conversion
        wait_for(system, CONVERSION, {broken.id})
        retried = jobs.retry_job(job_pb2.RetryJobRequest(id=broken.job_id)).job
        assert retried.state == job_pb2.JOB_STATE_AVAILABLE and retried.attempt == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = jobs.get_job(job_pb2.GetJobRequest(id=broken.job_id))
            if again.job.state == job_pb2.JOB_STATE_DISCARDED:
                break
            time.sleep(0.1)
        history = [
            job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in again.events
        ]
        assert history == [
            "ENQUEUED", "STARTED", "FAILED", "DISCARDED",
            "RETRIED", "STARTED", "FAILED", "DISCARDED",
        ]  # fmt: skip
        assert len(again.job.errors) == 2

        listed = jobs.list_jobs(
            job_pb2.ListJobsRequest(queue="conversions", state=job_pb2.JOB_STATE_DISCARDED)
        ).jobs
        assert [j.id for j in listed] == [broken.job_id]
        assert listed[0].conversion.conversion_id == broken.id
        emails_only = jobs.list_jobs(job_pb2.ListJobsRequest(actor="deliver_email")).jobs
        assert {j.actor for j in emails_only} == {"deliver_email"}
        with pytest.raises(TwirpError) as bad_token:
            jobs.list_jobs(job_pb2.ListJobsRequest(page_token="garbage"))
        assert bad_token.value.code is ErrorCode.INVALID_ARGUMENT

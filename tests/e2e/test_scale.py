"""Scale-out: PostgreSQL + RabbitMQ + S3 with 3 job workers and 2 image_svc replicas. The
client's load mode runs 1000 welcome-email workflows and 50 conversions while one worker is
SIGKILLed and restarted midway: everything completes, nothing is delivered twice, and both
image_svc replicas did part of the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from mcsv.v1 import common_pb2, email_pb2, job_pb2
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.job_twirp import JobServiceClient

from internal.storage import open_storage
from internal.supervisor import ROOT
from tests.e2e.backends import backend_env
from tests.e2e.system import peer, whole_system
from tests.support.servers import free_port

pytestmark = pytest.mark.slow
USERS, IMAGES = 1000, 50


def completed_jobs(jobs: JobServiceClient) -> int:
    stats = jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues
    return sum(queue.completed for queue in stats)


def all_emails(emails: EmailServiceClient) -> list[email_pb2.Email]:
    found: list[email_pb2.Email] = []
    token = ""
    while True:
        page = emails.list_emails(email_pb2.ListEmailsRequest(page_size=1000, page_token=token))
        found += page.emails
        token = page.next_page_token
        if not token:
            return found


def test_1000_emails_and_50_conversions_with_replicas_and_a_killed_worker(
    tmp_path: Path, s3_endpoint: str
) -> None:
    image_replicas = ",".join(f"http://127.0.0.1:{free_port()}" for _ in range(2))
    with (
        backend_env("postgres-rabbitmq-s3", s3_endpoint) as backend,
        whole_system(
            tmp_path, workers=3, env=backend, IMAGE_SVC_URL=image_replicas,
            JOB_VISIBILITY_TIMEOUT_SECONDS="5",
        ) as system,
        peer(system.settings, JobServiceClient) as jobs,
        peer(system.settings, EmailServiceClient) as emails,
    ):  # fmt: skip
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "load", "--users", str(USERS),
             "--images", str(IMAGES), "--concurrency", "20", "--timeout", "300", "--quiet"],
            cwd=ROOT, env={**os.environ, **system.env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while completed_jobs(jobs) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        system.kill("worker-2", signal.SIGKILL)  # midway, with jobs in hand
        system.start_worker(2)
        output, _ = load.communicate(timeout=400)
        assert load.returncode == 0, output
        assert f"welcome emails: {USERS + 1} started, {USERS + 1} completed" in output, output
        assert f"conversions: {IMAGES} started, {IMAGES} completed" in output, output

        sent = all_emails(emails)
        welcome = Counter(
            e.user_id for e in sent if e.template == common_pb2.EMAIL_TEMPLATE_WELCOME
        )
        assert len(welcome) == USERS + 1 and set(welcome.values()) == {1}  # one each, no more
        done = [e for e in sent if e.template == common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE]
        assert len(done) == IMAGES and len({e.idempotency_key for e in done}) == IMAGES

        settings = system.settings
        store = open_storage(settings.storage_url, public_url="", secret="")
        converted = [e.idempotency_key.removeprefix("conversion:") for e in done]
        assert all(store.exists(f"pdfs/{conversion_id}.pdf") for conversion_id in converted)
        per_replica = []
        for url in settings.urls("image_svc"):
            metrics = httpx.get(url + "/metrics").text
            served = [
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("mcsv_rpc_server_requests_total{")
                and 'method="ConvertToPdf"' in line
            ]
            per_replica.append(sum(served))
        assert all(count > 0 for count in per_replica), per_replica  # both replicas worked

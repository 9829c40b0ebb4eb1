"""The chaos run of `just chaos` (tests/chaos.py), smaller: 300 welcome workflows and 5
conversions while user_svc, a worker and job_svc are SIGKILLed and email_svc hangs (SIGSTOP)
for 10 s, under the supervisor with restarts on; on the embedded default and on PostgreSQL +
RabbitMQ + S3. Every workflow must complete, once: no failure, nothing missing or refused, no
duplicate email or notification, every job in a final state, every SQLite database intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import chaos

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["embedded", "postgres-rabbitmq-s3"])
def test_no_workflow_is_lost_or_doubled_when_processes_die_and_hang(
    backend: str, tmp_path: Path, s3_endpoint: str
) -> None:
    options = chaos.Options(
        users=300,
        images=5,
        stop_seconds=10,
        backend=backend,
        timeout=120,
        settle_seconds=30,
        data_dir=tmp_path,
        s3_endpoint=s3_endpoint,
    )
    report = chaos.run(options)
    printed = "\n".join(report.lines)
    for kind in report.kinds.values():
        assert (kind.started, kind.completed) == (kind.expected, kind.expected), printed
        assert kind.failed == kind.missing == kind.refused == 0, printed
    assert report.duplicate_emails == report.duplicate_notifications == 0, printed
    assert report.emails_missing == report.unknown_emails == 0, printed
    assert report.unfinished_jobs == 0, printed
    assert report.corrupt_databases == 0, printed
    assert report.perfect, printed

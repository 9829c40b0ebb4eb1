"""Helpers for end-to-end tests: the whole system on free loopback ports in a temporary data
directory, and waiting for the workflows' final callbacks at client_svc."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mcsv.twirp import SyncClient
from mcsv.v1 import client_pb2, common_pb2, job_pb2
from mcsv.v1.client_twirp import ClientServiceClient
from mcsv.v1.job_twirp import JobServiceClient

from internal import config, registry
from internal.auth import OPERATOR, tokens
from internal.peers import SyncPeers
from internal.supervisor import System, running
from tests.support.servers import free_port, free_ports_in_a_row

ClientT = TypeVar("ClientT", bound=SyncClient)


def system_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {"MCSV_DATA_DIR": str(data_dir)}
    for service in registry.SERVICES:
        env[service.url_variable] = f"http://127.0.0.1:{free_port()}"
    # Worker N serves its metrics on this port + N - 1: not the default 9100, which another
    # system on this machine may hold.
    env["WORKER_METRICS_URL"] = f"http://127.0.0.1:{free_ports_in_a_row()}"
    # Quick retries, so that the resilience tests take seconds; a horizon no test outlasts.
    env.update(JOB_MIN_BACKOFF_MS="200", JOB_MAX_BACKOFF_MS="1000", JOB_RETRY_HORIZON_SECONDS="120")
    env.update(extra)
    return env


@contextmanager
def whole_system(
    data_dir: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    restart: bool = False,
    worker_threads: int = 8,
    **extra: str,
) -> Iterator[System]:
    """The system running until the block ends, its output in data_dir/system.log. Without
    `restart` a process that exits fails the test (check_alive), unless stopped on purpose."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "system.log").open("w")
    settings = system_env(data_dir, **{**(env or {}), **extra})
    system = System(
        env=settings, workers=workers, worker_threads=worker_threads, output=log, restart=restart
    )
    try:
        with running(system):
            yield system
    finally:
        log.close()


@contextmanager
def peer(
    settings: config.Settings, client_type: type[ClientT], identity: str = OPERATOR
) -> Iterator[ClientT]:
    """A typed client of one service, built as the services build theirs (internal.peers),
    calling as `identity`: the operator, or a service name."""
    with SyncPeers(settings, identity=identity) as peers:
        yield peers.client(client_type)


def as_user(settings: config.Settings, user_id: str) -> dict[str, str]:
    """The headers of a call made as this user: their API token, as CreateUser answers it
    (tests/e2e/test_auth.py checks CreateUser's own)."""
    return {"Authorization": f"Bearer {tokens.user_token(settings, user_id)}"}


EMAIL = client_pb2.NOTIFICATION_KIND_EMAIL_DELIVERED
CONVERSION = client_pb2.NOTIFICATION_KIND_CONVERSION_FINISHED


def notifications_client(system: System) -> contextlib.AbstractContextManager[ClientServiceClient]:
    """client_svc's generated client, built as the services build theirs."""
    return peer(system.settings, ClientServiceClient)


def wait_for(
    system: System, kind: client_pb2.NotificationKind, subjects: set[str], timeout: float = 120
) -> dict[str, client_pb2.Notification]:
    """The final callbacks client_svc received for these workflows, waiting until all came."""
    deadline = time.monotonic() + timeout
    found: dict[str, client_pb2.Notification] = {}
    cursor = 0
    with notifications_client(system) as notifications:
        while time.monotonic() < deadline:
            system.check_alive()
            page = notifications.list_notifications(
                client_pb2.ListNotificationsRequest(
                    since_sequence=cursor, kind=kind, page_size=1000
                )
            )
            for received in page.notifications:
                if received.subject_id in subjects:
                    found.setdefault(received.subject_id, received)
            if page.notifications:
                cursor = page.notifications[-1].sequence
            if len(found) == len(subjects):
                return found
            if not page.next_page_token:
                time.sleep(0.2)
    missing = sorted(subjects - set(found))
    raise AssertionError(
        f"{len(missing)} of {len(subjects)} {client_pb2.NotificationKind.Name(kind)} "
        f"workflows missing: {missing[:5]}"
    )


def outcome(received: client_pb2.Notification) -> common_pb2.Outcome:
    event = received.email_delivered if received.kind == EMAIL else received.conversion_finished
    return event.outcome


def version(received: client_pb2.Notification) -> int:
    event = received.email_delivered if received.kind == EMAIL else received.conversion_finished
    return event.version


def succeeded(received: client_pb2.Notification) -> bool:
    return outcome(received) == common_pb2.OUTCOME_SUCCEEDED


def latest(
    system: System,
    kind: client_pb2.NotificationKind,
    subjects: set[str],
    until: Callable[[client_pb2.Notification], bool],
    timeout: float = 120,
) -> dict[str, client_pb2.Notification]:
    """The latest notification client_svc keeps for each of these workflows (a replaced one
    comes again with a later sequence), waiting until each satisfies `until`."""
    deadline = time.monotonic() + timeout
    found: dict[str, client_pb2.Notification] = {}
    cursor = 0
    with notifications_client(system) as notifications:
        while True:
            system.check_alive()
            page = notifications.list_notifications(
                client_pb2.ListNotificationsRequest(since_sequence=cursor, kind=kind)
            )
            for received in page.notifications:
                if received.subject_id in subjects:
                    found[received.subject_id] = received
            if page.notifications:
                cursor = page.notifications[-1].sequence
            if len(found) == len(subjects) and all(until(n) for n in found.values()):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not all as expected after {timeout}s: {found}")
            if not page.next_page_token:
                time.sleep(0.2)


def wait_job(
    jobs: JobServiceClient,
    job_id: str,
    states: Collection[job_pb2.JobState],
    timeout: float = 60,
) -> job_pb2.GetJobResponse:
    """A job (and its history) once it is in one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = jobs.get_job(job_pb2.GetJobRequest(id=job_id))
        if answer.job.state in states:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {answer.job.state} after {timeout}s")
        time.sleep(0.05)


def history(answer: job_pb2.GetJobResponse) -> list[str]:
    return [
        job_pb2.JobEventType.Name(e.type).removeprefix("JOB_EVENT_TYPE_") for e in answer.events
    ]


@contextmanager
def paused(system: System, name: str) -> Iterator[None]:
    """A child stopped with SIGSTOP until the block ends: a hung peer, which accepts
    connections and never answers, so its callers wait for their RPC timeout."""
    process = system.children[name].process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def bring_back(system: System, *names: str) -> None:
    """Starts again the services taken down with System.kill, and waits until all services
    are ready."""
    for name in names:
        child = system.children[name]
        system.start_child(name, child.argv, child.env, probe=child.probe)
    system.wait_ready(60)

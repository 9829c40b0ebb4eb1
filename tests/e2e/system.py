"""Helpers for end-to-end tests: the whole system on free loopback ports in a temporary data
directory, and waiting for the workflows' final callbacks at client_svc."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mcsv.twirp import SyncClient
from mcsv.v1 import client_pb2, common_pb2
from mcsv.v1.client_twirp import ClientServiceClient

from internal import config, registry
from internal.auth import OPERATOR, tokens
from internal.peers import SyncPeers
from internal.supervisor import System, running
from tests.support.servers import free_port

ClientT = TypeVar("ClientT", bound=SyncClient)


def system_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {"MCSV_DATA_DIR": str(data_dir)}
    for service in registry.SERVICES:
        env[service.url_variable] = f"http://127.0.0.1:{free_port()}"
    # Worker N serves its metrics on this port + N - 1: not the default 9100, which another
    # system on this machine may hold.
    env["WORKER_METRICS_URL"] = f"http://127.0.0.1:{free_port()}"
    # Quick retries, so that the resilience tests take seconds.
    env.update(JOB_MIN_BACKOFF_MS="200", JOB_MAX_BACKOFF_MS="1000", JOB_MAX_RETRIES="12")
    env.update(extra)
    return env


@contextmanager
def whole_system(
    data_dir: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    restart: bool = False,
    **extra: str,
) -> Iterator[System]:
    """The system running until the block ends, its output in data_dir/system.log. Without
    `restart` a process that exits fails the test (check_alive), unless stopped on purpose."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "system.log").open("w")
    settings = system_env(data_dir, **{**(env or {}), **extra})
    system = System(env=settings, workers=workers, output=log, restart=restart)
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


def succeeded(received: client_pb2.Notification) -> bool:
    event = received.email_delivered if received.kind == EMAIL else received.conversion_finished
    return event.outcome == common_pb2.OUTCOME_SUCCEEDED

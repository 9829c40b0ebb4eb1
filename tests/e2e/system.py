"""Helpers for end-to-end tests: the whole system on free loopback ports in a temporary data
directory, and waiting for the workflows' final callbacks at client_svc."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mcsv.v1 import common_pb2

from internal import config
from internal.services import client_svc
from internal.supervisor import System, running
from tests.support.servers import free_port


def system_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {"MCSV_DATA_DIR": str(data_dir)}
    for service in config.SERVICES:
        env[config._url_variable(service)] = f"http://127.0.0.1:{free_port()}"
    # Worker N serves /metrics on this port + N - 1: not the default 9100 another run may hold.
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


def wait_for(
    system: System, kind: str, subjects: set[str], timeout: float = 120
) -> dict[str, client_svc.Received]:
    """The final callbacks client_svc received for these workflows, waiting until all came."""
    database = client_svc.open_notifications(system.settings)
    deadline = time.monotonic() + timeout
    found: dict[str, client_svc.Received] = {}
    while time.monotonic() < deadline:
        system.check_alive()
        for received in client_svc.received_since(database, 0):
            if received.kind == kind and received.subject_id in subjects:
                found.setdefault(received.subject_id, received)
        if len(found) == len(subjects):
            return found
        time.sleep(0.2)
    missing = sorted(subjects - set(found))
    raise AssertionError(
        f"{len(missing)} of {len(subjects)} {kind} workflows missing: {missing[:5]}"
    )


def succeeded(received: client_svc.Received) -> bool:
    event = (
        received.request.email_delivered
        if received.kind == "email"
        else (received.request.conversion_finished)
    )
    return event.outcome == common_pb2.OUTCOME_SUCCEEDED

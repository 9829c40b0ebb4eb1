"""/ready when a dependency hangs: client_svc as a real process on PostgreSQL, its table locked
by another connection so that the readiness query waits. The probe runs in a thread, so /ready
answers 503 once its time limit passes, and the service keeps answering meanwhile."""

from __future__ import annotations

import concurrent.futures
import sys
import time
from pathlib import Path

import httpx
import psycopg2

from internal.services.common.readiness import READY_TIMEOUT_SECONDS
from tests.e2e.backends import postgres_database
from tests.support.servers import ROOT, free_port, serving


def test_a_hung_database_is_not_ready_within_the_time_limit(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with postgres_database() as database_url:
        env = {"MCSV_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url, "CLIENT_SVC_URL": url}
        argv = [sys.executable, str(ROOT / "cmd" / "client_svc.py")]
        with serving("client_svc-readiness", argv, url + "/ready", env=env):
            assert httpx.get(url + "/ready").status_code == 200
            locker = psycopg2.connect(database_url)
            try:
                with locker.cursor() as cursor:  # held until the rollback below
                    cursor.execute("LOCK TABLE notification IN ACCESS EXCLUSIVE MODE")
                with concurrent.futures.ThreadPoolExecutor() as pool:
                    started = time.monotonic()
                    ready = pool.submit(httpx.get, url + "/ready", timeout=30)
                    time.sleep(0.5)  # the probe is waiting for the lock by now
                    health = httpx.get(url + "/health", timeout=2)
                    answer = ready.result()
                    waited = time.monotonic() - started
            finally:
                locker.rollback()
                locker.close()
            assert httpx.get(url + "/ready").status_code == 200  # ready again once released
    assert health.status_code == 200  # the event loop was free while the probe waited
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"] == f"no answer within {READY_TIMEOUT_SECONDS:g}s"
    assert READY_TIMEOUT_SECONDS <= waited < READY_TIMEOUT_SECONDS + 3

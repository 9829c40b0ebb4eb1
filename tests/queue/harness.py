"""Real Dramatiq worker processes for the queue tests, and the runs their actors record.

The workers run `python -m dramatiq tests.queue.actors` in a session of their own, so that a
test can SIGKILL the whole group (the CLI's main process and its forked workers) mid-job.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dramatiq import Broker, Message

ROOT = Path(__file__).resolve().parents[2]

#: The retry policy of the actors' broker: 3 retries, the first after 200-400 ms.
MAX_RETRIES = 3
MIN_BACKOFF_MS = 200
MAX_BACKOFF_MS = 5_000

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    key: str
    event: str
    at: float
    pid: int
    detail: str


def record_run(path: str, key: str, event: str, detail: str = "") -> None:
    with sqlite3.connect(path, timeout=30) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS runs (key TEXT, event TEXT, at REAL, pid INTEGER,"
            " detail TEXT)"
        )
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
            (key, event, time.time(), os.getpid(), detail),
        )
    db.close()


def read_runs(path: Path, event: str | None = None) -> list[Run]:
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute("SELECT key, event, at, pid, detail FROM runs ORDER BY at").fetchall()
    except sqlite3.OperationalError:  # no table yet
        rows = []
    finally:
        db.close()
    return [Run(*row) for row in rows if event is None or row[1] == event]


def send(
    broker: Broker, actor: str, *args: Any, queue: str = "default", delay: int | None = None
) -> Message[Any]:
    """Enqueues a message for an actor of tests.queue.actors, as a producer that does not
    import the actors would."""
    message: Message[Any] = Message(
        queue_name=queue, actor_name=actor, args=args, kwargs={}, options={}
    )
    return broker.enqueue(message, delay=delay)


class Workers:
    """A running `dramatiq` CLI: its main process and its worker processes."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, processes: int) -> None:
        self.process = process
        self.log = log
        self.processes = processes

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        wait_for(
            lambda: self.output().count("Worker process is ready for action.") >= self.processes,
            timeout,
            "the workers to boot",
            self,
        )

    def kill(self) -> None:
        """SIGKILL to every process of the group: nothing gets to clean up. Returns once
        all of them have died (the forked workers too, whom no one here waits for), so that
        what a dead process leaves (its doorbell, its leases) is left by then."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 10
        while _living_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the main process, as a supervisor stops workers: it passes the signal
        on, running jobs finish and the rest is given back. (A second SIGTERM, as a signal to
        the whole group would deliver, makes Dramatiq's workers exit at once.)"""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"workers did not stop in {timeout}s:\n{self.output()}") from None
        # The main process waits for its workers, but make sure none is left behind.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _living_members(group: int) -> list[int]:
    """The processes of process group `group` that have not died (zombies have: their
    sockets are closed)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, pgid = fields[0], int(fields[2])
        if pgid == group and state not in ("Z", "X"):
            living.append(int(stat.parent.name))
    return living


@contextmanager
def running_workers(
    env: Mapping[str, str], log: Path, *, processes: int = 1, threads: int = 2
) -> Iterator[Workers]:
    """Starts the workers and waits until every process is ready; kills them at the end
    (a graceful stop takes Dramatiq a second or two, and each test has its own queue)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "tests.queue.actors",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
                "--worker-shutdown-timeout",
                "10000",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers = Workers(process, log, processes)
    try:
        workers.wait_ready()
        yield workers
    finally:
        workers.kill()


def wait_for(
    condition: Callable[[], T], timeout: float, what: str, workers: Workers | None = None
) -> T:
    """Polls `condition` until it returns something true; fails naming `what` and showing
    the workers' log if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            log = workers.output() if workers is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log[-6000:]}")
        time.sleep(0.05)

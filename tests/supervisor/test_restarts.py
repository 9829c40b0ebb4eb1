"""The supervisor's restart policy, on small stand-in processes (real ones, started by
System.start_child): a crashing child is restarted with a doubling delay until too many
restarts come too quickly, then everything is stopped; what it logs says so."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from internal.supervisor import SupervisorError, System

CRASH = "import sys; print('starting', flush=True); sys.exit(3)"
CRASH_AFTER_A_SECOND = "import sys, time; print('starting', flush=True); time.sleep(1); sys.exit(3)"
STEADY = "import time; print('starting', flush=True); time.sleep(600)"


def stand_in(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@contextmanager
def supervised(tmp_path: Path, restart: bool, **settings: str) -> Iterator[System]:
    with (tmp_path / "system.log").open("w") as log:
        system = System(
            env={"MCSV_DATA_DIR": str(tmp_path), **settings}, output=log, restart=restart
        )
        try:
            yield system
        finally:
            system.stop()


def supervisor_lines(tmp_path: Path) -> list[str]:
    """What the supervisor itself logged, with process ids blanked out."""
    lines = (tmp_path / "system.log").read_text().splitlines()
    said = [line.partition(" | ")[2] for line in lines if line.startswith("supervisor ")]
    return [re.sub(r"pid \d+", "pid N", line) for line in said]


def starts(tmp_path: Path, name: str) -> int:
    return (tmp_path / "system.log").read_text().count(f"{name:<10} | starting")


def wait_until_given_up(system: System, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            system.check_alive()
        except SupervisorError as exc:
            return str(exc)
        time.sleep(0.05)
    raise AssertionError(f"the supervisor did not give up within {timeout}s")


FAST = {
    "SUPERVISOR_MAX_RESTARTS": "3",
    "SUPERVISOR_RESTART_PERIOD_SECONDS": "60",
    "SUPERVISOR_MIN_BACKOFF_MS": "100",
    "SUPERVISOR_MAX_BACKOFF_MS": "300",
}


def test_a_child_that_keeps_crashing_makes_the_supervisor_give_up_and_stop_everything(
    tmp_path: Path,
) -> None:
    with supervised(tmp_path, restart=True, **FAST) as system:
        system.start_child("steady", stand_in(STEADY))
        system.start_child("crasher", stand_in(CRASH))
        reason = wait_until_given_up(system)
        steady = system.children["steady"].process
        assert steady is not None and steady.poll() is not None  # stopped with the rest

    assert "crasher exited with status 3 after 3 restarts within 60s" in reason
    within = "restarts within 60s)"
    assert supervisor_lines(tmp_path) == [
        f"crasher exited with status 3; restart 1 in 0.1s (1 of at most 3 {within}",
        "crasher restarted (pid N)",
        f"crasher exited with status 3; restart 2 in 0.2s (2 of at most 3 {within}",
        "crasher restarted (pid N)",
        f"crasher exited with status 3; restart 3 in 0.3s (3 of at most 3 {within}",  # capped
        "crasher restarted (pid N)",
        "crasher exited with status 3 after 3 restarts within 60s (SUPERVISOR_MAX_RESTARTS=3, "
        "SUPERVISOR_RESTART_PERIOD_SECONDS=60); giving up, stopping everything",
        "stopped everything",
    ]
    assert starts(tmp_path, "crasher") == 4
    assert starts(tmp_path, "steady") == 1


def test_a_child_stopped_on_purpose_is_not_restarted(tmp_path: Path) -> None:
    with supervised(tmp_path, restart=True, **FAST) as system:
        system.start_child("steady", stand_in(STEADY))
        deadline = time.monotonic() + 30
        while starts(tmp_path, "steady") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        system.kill("steady")
        system.start_child("crasher", stand_in(CRASH))
        wait_until_given_up(system)  # the supervisor looked at "steady" all along
    assert starts(tmp_path, "steady") == 1
    assert not [line for line in supervisor_lines(tmp_path) if "steady" in line]


def test_a_child_that_stayed_up_restarts_after_the_shortest_delay_and_old_restarts_expire(
    tmp_path: Path,
) -> None:
    # Each run lasts a second: longer than "stable", and the previous restart is then older
    # than the period, so every restart is the first of its kind and the limit is never hit.
    with supervised(
        tmp_path,
        restart=True,
        SUPERVISOR_MAX_RESTARTS="1",
        SUPERVISOR_RESTART_PERIOD_SECONDS="0.5",
        SUPERVISOR_STABLE_SECONDS="0.5",
        SUPERVISOR_MIN_BACKOFF_MS="100",
    ) as system:
        system.start_child("flaky", stand_in(CRASH_AFTER_A_SECOND))
        deadline = time.monotonic() + 60
        while starts(tmp_path, "flaky") < 4 and time.monotonic() < deadline:
            system.check_alive()  # never gives up
            time.sleep(0.1)
    crashes = [line for line in supervisor_lines(tmp_path) if "exited" in line]
    assert len(crashes) >= 3
    assert set(crashes) == {
        "flaky exited with status 3; restart 1 in 0.1s (1 of at most 1 restarts within 0.5s)"
    }


def test_without_restarts_a_crash_is_reported_and_nothing_is_restarted(tmp_path: Path) -> None:
    with supervised(tmp_path, restart=False, **FAST) as system:
        system.start_child("crasher", stand_in(CRASH))
        process = system.children["crasher"].process
        assert process is not None
        process.wait(timeout=30)
        with pytest.raises(SupervisorError, match="crasher exited with status 3"):
            system.check_alive()
    assert starts(tmp_path, "crasher") == 1
    assert supervisor_lines(tmp_path) == []

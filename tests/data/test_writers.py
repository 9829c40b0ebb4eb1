"""Writers of one SQLite file take turns across processes (internal.data.writers): a writer
waits for another process's turn to end, a transaction inside a transaction takes no second
turn, and the turn is free again once its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from internal.data.writers import WriterTurns
from tests.support.servers import ROOT

HOLDER = """
import sys, time
from internal.data.writers import WriterTurns
with WriterTurns(sys.argv[1]).turn():
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the file's turn for `seconds`, once it says so."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_writer_waits_for_another_processs_turn_to_end(tmp_path: Path) -> None:
    holder = hold(tmp_path / "x.db", 0.5)
    started = time.monotonic()
    with WriterTurns(tmp_path / "x.db").turn():
        waited = time.monotonic() - started
    holder.wait(5)
    assert waited > 0.3


def test_a_turn_inside_a_turn_is_the_same_turn(tmp_path: Path) -> None:
    turns = WriterTurns(tmp_path / "x.db")
    with turns.turn(), turns.turn():
        pass
    holder = hold(tmp_path / "x.db", 0)  # the turn was given back: another process gets it
    assert holder.wait(5) == 0


def test_the_turn_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    holder = hold(tmp_path / "x.db", 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(5)
    started = time.monotonic()
    with WriterTurns(tmp_path / "x.db").turn():
        assert time.monotonic() - started < 5


def test_a_forked_child_takes_turns_with_its_parent(tmp_path: Path) -> None:
    turns = WriterTurns(tmp_path / "x.db")
    with turns.turn():  # opened in the parent before the fork
        pass
    ready, go = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child's own exit status is the check)
        with turns.turn():
            os.write(go, b"!")
            time.sleep(0.5)
        os._exit(0)
    assert os.read(ready, 1) == b"!"
    started = time.monotonic()
    with turns.turn():
        waited = time.monotonic() - started
    _, status = os.waitpid(child, 0)
    assert status == 0 and waited > 0.3

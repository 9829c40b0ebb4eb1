"""When the SQLite broker's durable writes reach the disk: an enqueue returns only once the
WAL holding it is synced, the sync happens after the write turn is given up (other writers
go on meanwhile), a write committed during another's sync is synced again before it returns,
and writes committed while a sync was under way share the next one. An enqueue wakes the
consumers before its sync (its own process's directly, not through their doorbell)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest

from internal.queue import SQLiteBroker


def _message(index: int) -> dramatiq.Message[None]:
    return dramatiq.Message(queue_name="q", actor_name="noop", args=(index,), kwargs={},
                            options={})  # fmt: skip


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as other:
        (count,) = other.execute("SELECT COUNT(*) FROM queue_messages").fetchone()
    return int(count)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SQLiteBroker]:
    broker = SQLiteBroker(tmp_path / "broker.db")
    yield broker
    broker.close()


class SyncSpy:
    """Wraps os.fdatasync (which still runs): records what each call synced and what was
    true at that moment; `hold`, when set up, keeps the first call waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, observe: Callable[[], object]) -> None:
        self.real = os.fdatasync
        self.observe = observe
        self.calls: list[tuple[str, object]] = []
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        self.calls.append((os.readlink(f"/proc/self/fd/{fd}"), self.observe()))
        if self.hold is not None and len(self.calls) == 1:
            self.holding.set()
            self.hold.wait(10)
        self.real(fd)


def test_an_enqueue_is_committed_then_its_wal_synced_outside_the_write_turn(
    broker: SQLiteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def seen() -> tuple[int, bool]:
        # Another connection already sees the row; and another thread can take the turn.
        got_turn = threading.Event()

        def take_turn() -> None:
            with broker._writers.turn():
                got_turn.set()

        taker = threading.Thread(target=take_turn)
        taker.start()
        taker.join(5)
        return _rows(broker.path), got_turn.is_set()

    spy = SyncSpy(monkeypatch, seen)
    broker.enqueue(_message(1))
    assert spy.calls == [(f"{broker.path}-wal", (1, True))]


def test_an_enqueue_wakes_the_consumers_before_its_sync_not_after(
    broker: SQLiteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They can claim it from its commit on; woken after the sync, they found it gone."""
    consumer = broker.consume("q")
    bell = consumer.bell  # type: ignore[attr-defined]
    before = bell.generation()
    spy = SyncSpy(monkeypatch, bell.generation)
    broker.enqueue(_message(1))
    assert [generation for _, generation in spy.calls] == [before + 1]
    consumer.close()


def test_writes_committed_during_a_sync_are_synced_again_and_share_that_sync(
    broker: SQLiteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SyncSpy(monkeypatch, lambda: _rows(broker.path))
    spy.hold = threading.Event()
    returned: list[int] = []

    def enqueue(index: int) -> None:
        broker.enqueue(_message(index))
        returned.append(index)

    first = threading.Thread(target=enqueue, args=(1,))
    first.start()
    assert spy.holding.wait(5)  # the first enqueue is committed, its sync under way
    others = [threading.Thread(target=enqueue, args=(i,)) for i in (2, 3)]
    for other in others:
        other.start()
    deadline = threading.Event()
    while _rows(broker.path) < 3 and not deadline.wait(0.01):
        pass  # both committed, both waiting for the sync in progress
    assert returned == []  # nobody returns before a sync that covers its write
    spy.hold.set()
    for thread in (first, *others):
        thread.join(10)
    assert sorted(returned) == [1, 2, 3]
    # The first sync saw one row; one more sync, started after both later commits, saw three.
    assert [rows for _, rows in spy.calls] == [1, 3]


def test_a_dead_letter_is_synced_before_it_returns(
    broker: SQLiteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.enqueue(_message(1))
    consumer = broker.consume("q")
    message = next(consumer)
    assert message is not None
    spy = SyncSpy(monkeypatch, lambda: len(broker.dead_letters("q")))
    message.fail()
    consumer.nack(message)
    assert [dead for _, dead in spy.calls] == [1]
    consumer.close()


def test_an_enqueue_wakes_its_own_processs_consumers_before_it_returns(
    broker: SQLiteBroker,
) -> None:
    consumer = broker.consume("q")
    bell = consumer.bell  # type: ignore[attr-defined]
    for index in range(20):
        generation = bell.generation()
        broker.enqueue(_message(index))
        assert bell.generation() > generation  # rung in this thread, not by the listener
    consumer.close()


def test_an_enqueue_whose_wal_cannot_be_synced_fails_as_a_broker_connection_error(
    broker: SQLiteBroker,
) -> None:
    """The WAL file gone from under the broker (removed by hand): the commit cannot be made
    durable, and the enqueue says so with Dramatiq's connection error, as for any other
    failure of the database, not with an OSError of its own (job_svc's dispatcher leaves
    such a job's message to its periodic resend)."""
    broker.declare_queue("q")
    Path(f"{broker.path}-wal").unlink()
    with pytest.raises(dramatiq.errors.ConnectionClosed):
        broker.enqueue(_message(1))

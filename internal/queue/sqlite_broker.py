"""A crash-safe Dramatiq broker on one SQLite file.

Every message is a row. A worker *claims* a due row by leasing it (`leased_until`,
`lease_owner`) in one atomic UPDATE; `ack` deletes the row, `nack` moves it to
`dead_letters` with the reason. Nothing is held only in a worker's memory: if the worker is
SIGKILLed, its leases stop being renewed, expire after `visibility_timeout` seconds and the
rows are claimed again by another worker; sooner when a consuming process of the same machine
sees that the owner has died (a restarted worker as it starts, any worker every third of the
timeout; `lease_owners`). While a process is alive, a lease keeper thread renews the leases of every
message it holds (running or waiting in its work queue), so a slow job is not delivered
twice.

Delays are kept in the row (`eta`) rather than on Dramatiq's in-memory `<queue>.DQ` delay
queues: a delayed message (a job's next attempt, or `send_with_options(delay=...)`) stays in
its own queue and becomes claimable at its eta. This broker therefore declares no delay
queues, and a retry scheduled for hours ahead is not held by any worker meanwhile.

An enqueue wakes the idle consumers of every process at once (`wakeup`), as does a message
given back; an idle consumer otherwise sleeps until the earliest delayed message of its queue
is due, or `poll_interval` at most: the fallback that finds a lost wake-up, or a lease that ran
out (its worker on another machine died), within that time.

Delivery is at least once: a message whose worker died, or a retry enqueued just before its
worker died, can run twice; jobs are made idempotent above this layer.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dramatiq import Broker, Consumer, Message, MessageProxy
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed, DecodeError, QueueJoinTimeout
from dramatiq.middleware import Middleware, SkipMessage

from internal.data.writers import WriterTurns

from . import lease_owners
from .middleware import describe_error, give_up_reason
from .wakeup import Doorbell, doorbell_directory, ring, sender_socket

logger = logging.getLogger(__name__)

#: How long a connection waits for another process's write lock before failing.
BUSY_TIMEOUT_SECONDS = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    eta REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    leased_until REAL,
    lease_owner TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_messages_due ON queue_messages (queue_name, eta);
CREATE INDEX IF NOT EXISTS queue_messages_owner ON queue_messages (lease_owner);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    errors TEXT NOT NULL,  -- unused ('[]'): from when messages carried their attempts' errors
    deliveries INTEGER NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue_name, dead_at);
"""

# A row waits when nobody holds a live lease on it, and is due once its eta has passed too.
_WAITING = "queue_name = :queue AND (leased_until IS NULL OR leased_until <= :now)"
_DUE = f"{_WAITING} AND eta <= :now"


class DeliveryLimitExceeded(SkipMessage):
    """A message was claimed more than `max_deliveries` times without being acked or nacked:
    its workers keep dying while running it."""


@dataclass(frozen=True)
class QueueCounts:
    ready: int
    delayed: int
    leased: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    id: int
    queue_name: str
    message_id: str
    actor_name: str
    # None when the stored body could not be decoded; `body` still has it.
    message: Message[Any] | None
    body: bytes
    reason: str
    deliveries: int
    dead_at: float


class SQLiteMessage(MessageProxy):
    """A claimed row. `deliveries` counts the times it has been claimed, this one included."""

    def __init__(self, message: Message[Any], row_id: int, deliveries: int) -> None:
        super().__init__(message)
        self.row_id = row_id
        self.deliveries = deliveries
        self.redelivered = deliveries > 1


class SQLiteBroker(Broker):
    """A Dramatiq broker storing its queues in the SQLite file at `path`.

    Parameters:
      visibility_timeout: seconds a claimed message stays invisible to other workers without
        its lease being renewed; after a worker dies, its messages are delivered again this
        long after its last renewal.
      poll_interval: the longest an idle consumer sleeps before looking again (it wakes at
        once for an enqueue, and when the earliest delayed message of its queue is due).
      max_deliveries: a message claimed more often than this (its workers died each time)
        is dead-lettered instead of run again; None never gives up.
      middleware: as for `dramatiq.Broker`; None means Dramatiq's defaults.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        visibility_timeout: float = 60.0,
        poll_interval: float = 1.0,
        max_deliveries: int | None = 20,
        middleware: list[Middleware] | None = None,
    ) -> None:
        if str(path) in ("", ":memory:"):
            raise ValueError(f"SQLiteBroker needs the path of a database file, not {path!r}")
        if visibility_timeout <= 0:
            raise ValueError(f"visibility_timeout must be positive, got {visibility_timeout!r}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ValueError(f"max_deliveries must be at least 1, got {max_deliveries!r}")
        super().__init__(middleware=middleware)
        self.path = Path(path)
        self.visibility_timeout = float(visibility_timeout)
        self.poll_interval = float(poll_interval)
        self.max_deliveries = max_deliveries
        if max_deliveries is not None:
            # First, so that no other middleware sees a message that will not run.
            self.middleware.insert(0, _DeliveryLimit(max_deliveries))
        self.queues: set[str] = set()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # One writer at a time: threads and processes wait their turn (internal.data.writers)
        # rather than in SQLite's busy handler, which sleeps (1, 2, 5, 10... ms) between tries.
        self._writers = WriterTurns(self.path)
        # Acked rows not yet deleted: whoever takes the write lock next deletes them all in
        # one commit (a group commit), so that acks from many threads share one disk sync.
        self._unacked: set[int] = set()
        self._unacked_lock = threading.Lock()
        # This process's commits, and how many of them are known to be on disk (_sync_log).
        self._commits = 0
        self._synced = 0
        self._sync_lock = threading.Lock()
        self._log_fd = -1
        self._pid = -1
        self._owner = ""
        self._lease_keeper: _LeaseKeeper | None = None
        self._lease_keeper_lock = threading.Lock()
        self._closed = False
        self._doorbells = doorbell_directory(self.path)
        self._doorbell: Doorbell | None = None
        self._sender: socket.socket | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)

    # -- connections ---------------------------------------------------------------------

    def _check_process(self) -> None:
        """A forked child gets its own lease owner, connections and lease keeper."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._owner = lease_owners.this_process()
            self._local = threading.local()
            self._connections = []
            self._unacked = set()
            self._commits = self._synced = 0
            self._sync_lock = threading.Lock()
            self._log_fd = -1  # the parent's descriptor is the parent's to close
            self._lease_keeper = None
            self._doorbell = None  # the parent's socket is the parent's to close
            self._sender = None

    @property
    def lease_owner(self) -> str:
        """Identifies this process's leases in the database."""
        self._check_process()
        return self._owner

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection."""
        if self._closed:
            raise RuntimeError("the broker is closed")
        self._check_process()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # only so that close() can close it
            )
            # Every commit survives the process's crash (WAL). A commit is not synced to disk
            # on its own (an fsync each, most of a ms): enqueues and dead letters sync the WAL
            # once they are committed (_sync_log), and claims, acks and lease renewals ride
            # along: one lost to a power cut makes the message come back, which at-least-once
            # delivery allows.
            connection.execute("PRAGMA synchronous = NORMAL")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; database errors become Dramatiq connection errors, which
        the worker retries (acks) or recovers from (consumers)."""
        try:
            yield self._connection()
        except sqlite3.OperationalError as error:
            raise ConnectionClosed(error) from error  # type: ignore[no-untyped-call]

    def _write(self, sql: str, params: Any = ()) -> list[Any]:
        """One statement that writes, in this process's write turn, committed on its own: a
        transaction without BEGIN and COMMIT, each of which is a statement that lets the GIL
        go and come back (a thread switch under load). Returns the rows it returns."""
        with self._writers.turn():
            return self._locked_write(sql, params)

    def _locked_write(self, sql: str, params: Any = ()) -> list[Any]:
        """`_write` for a caller that holds the write turn."""
        with self._db() as db:
            return db.execute(sql, params).fetchall()

    def _committed(self) -> int:
        """Counts a commit of this process (made in the write turn); returns its number, for
        `_sync_log`."""
        self._commits += 1
        return self._commits

    def _sync_log(self, ticket: int) -> None:
        """Returns once this process's commit number `ticket`, and every one before it, is on
        disk: the WAL is synced, after the write turn is given up rather than inside it, as
        SQLite's `synchronous = FULL` does at each commit. Writers go on while the disk
        syncs (claims and acks do not wait for an enqueue's fsync), and a sync covers every
        commit made before it started, so that concurrent durable writes share one.

        A committed transaction's frames are in the WAL file (written, not yet synced) until
        a checkpoint copies them into the database; a checkpoint syncs the WAL before and the
        database after, and the WAL is deleted only by the last connection's close, which
        checkpoints first (this broker keeps a connection open). Syncing the WAL file thus
        makes this commit as durable as a FULL commit would have."""
        with self._sync_lock:
            if self._synced >= ticket:
                return  # a sync that started after this commit has finished
            upto = self._commits
            try:
                if self._log_fd < 0:
                    self._log_fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
                os.fdatasync(self._log_fd)
            except OSError as error:
                raise ConnectionClosed(error) from error  # type: ignore[no-untyped-call]
            self._synced = upto

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction, holding this process's write turn and the database's write
        lock. `durable`: the block's exit returns once the transaction is on disk."""
        with self._writers.turn():
            with self._locked_transaction() as db:
                yield db
            ticket = self._committed()
        if durable:
            self._sync_log(ticket)

    @contextmanager
    def _locked_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, for a caller that holds the write turn."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lease_keeper_lock:
            if self._lease_keeper is not None:
                self._lease_keeper.stop()
                self._lease_keeper = None
            if self._doorbell is not None:
                self._doorbell.close()
                self._doorbell = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        with self._sync_lock:
            if self._log_fd >= 0 and self._pid == os.getpid():
                os.close(self._log_fd)
            self._log_fd = -1
        self._writers.close()
        self._closed = True

    # -- the Broker interface -------------------------------------------------------------

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        self._check_process()
        with self._lease_keeper_lock:
            if self._lease_keeper is None or not self._lease_keeper.is_alive():
                self._lease_keeper = _LeaseKeeper(self)
                self._lease_keeper.start()
            if self._doorbell is None:
                self._doorbell = Doorbell(self._doorbells)
            doorbell = self._doorbell
        return _SQLiteConsumer(self, queue_name, prefetch, doorbell)

    def declare_queue(self, queue_name: str) -> None:
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def get_declared_queues(self) -> set[str]:
        return self.queues.copy()

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Stores the message, due now or `delay` milliseconds from now; returns once it is on
        disk (it survives a power loss)."""
        if delay is not None and delay < 0:
            raise ValueError(f"delay must not be negative, got {delay!r}")
        message = message.copy(queue_name=q_name(message.queue_name))
        self.emit_before("enqueue", message, delay)
        now = time.time()
        with self._writers.turn():
            self._locked_write(
                "INSERT INTO queue_messages (queue_name, message_id, body, eta, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (message.queue_name, message.message_id, message.encode(),
                 now + (delay or 0) / 1000, now),
            )  # fmt: skip
            ticket = self._committed()
        # Consumers can claim the message from its commit on, so they are woken now and
        # start on it while the disk syncs. A delayed message rings too: it may be due before
        # their naps end.
        self._ring(message.queue_name)
        self._sync_log(ticket)
        self.emit_after("enqueue", message, delay)
        return message

    def _ring(self, queue_name: str) -> None:
        """Wakes the queue's idle consumers in every process: a message is due, or will be
        sooner than they would look again."""
        if self._sender is None:
            self._sender = sender_socket()
        ring(self._doorbells, self._sender, queue_name, self._doorbell)

    def flush(self, queue_name: str) -> None:
        """Drops the queue's messages, leased ones included, and its dead letters."""
        with self._transaction() as db:
            db.execute("DELETE FROM queue_messages WHERE queue_name = ?", (q_name(queue_name),))
            db.execute("DELETE FROM dead_letters WHERE queue_name = ?", (q_name(queue_name),))

    def flush_all(self) -> None:
        """Drops every message and dead letter in the file, declared here or not."""
        with self._transaction() as db:
            db.execute("DELETE FROM queue_messages")
            db.execute("DELETE FROM dead_letters")

    def join(self, queue_name: str, *, timeout: int | None = None, interval: int = 100) -> None:
        """Waits until the queue holds no message: none due, delayed or being processed.
        `timeout` and `interval` are in milliseconds, as elsewhere in Dramatiq.

        Raises QueueJoinTimeout when the timeout elapses first."""
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        while True:
            with self._db() as db:
                (left,) = db.execute(
                    "SELECT COUNT(*) FROM queue_messages WHERE queue_name = ?",
                    (q_name(queue_name),),
                ).fetchone()
            if left == 0:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(  # type: ignore[no-untyped-call]
                    f"{queue_name}: {left} message(s) left after {timeout} ms"
                )
            time.sleep(interval / 1000)

    # -- inspection -----------------------------------------------------------------------

    def message_counts(self, queue_name: str) -> QueueCounts:
        now = time.time()
        with self._db() as db:
            ready, delayed, leased = db.execute(
                "SELECT"
                " COALESCE(SUM(eta <= :now AND (leased_until IS NULL OR leased_until <= :now)), 0),"
                " COALESCE(SUM(eta > :now AND (leased_until IS NULL OR leased_until <= :now)), 0),"
                " COALESCE(SUM(leased_until > :now), 0)"
                " FROM queue_messages WHERE queue_name = :queue",
                {"now": now, "queue": q_name(queue_name)},
            ).fetchone()
            (dead,) = db.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE queue_name = ?", (q_name(queue_name),)
            ).fetchone()
        return QueueCounts(ready=ready, delayed=delayed, leased=leased, dead=dead)

    def dead_letters(self, queue_name: str | None = None) -> list[DeadLetter]:
        """The dead-lettered messages, oldest first."""
        query = (
            "SELECT id, queue_name, message_id, actor_name, body, reason, deliveries,"
            " dead_at FROM dead_letters"
        )
        with self._db() as db:
            if queue_name is None:
                rows = db.execute(query + " ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    query + " WHERE queue_name = ? ORDER BY id", (q_name(queue_name),)
                ).fetchall()
        return [_dead_letter_from_row(*row) for row in rows]

    # -- what consumers do --------------------------------------------------------------------

    def _claim(
        self, queue_name: str, limit: int
    ) -> tuple[list[tuple[int, bytes, int]], float | None]:
        """Leases up to `limit` due messages to this process: (row id, body, deliveries).
        With none, also when to look again: the eta of the earliest waiting message (now, if
        another process took the due ones first), or None if no message waits."""
        with self._db() as db:
            # A read never waits for writers in WAL mode; most polls find nothing and so never
            # take the write lock.
            params = {"queue": queue_name, "now": time.time()}
            first = db.execute(
                f"SELECT eta FROM queue_messages WHERE {_WAITING} ORDER BY eta LIMIT 1", params
            ).fetchone()
            if first is None or first[0] > params["now"]:
                return [], None if first is None else float(first[0])
        with self._writers.turn():
            # The clock is read once the write lock is held: a lease computed before a long
            # wait for the lock would start out already (nearly) expired, and another process
            # could claim the same message while this one runs it.
            now = time.time()
            rows = self._locked_write(
                "UPDATE queue_messages"
                " SET leased_until = :until, lease_owner = :owner, deliveries = deliveries + 1"
                f" WHERE id IN (SELECT id FROM queue_messages WHERE {_DUE}"
                " ORDER BY eta, id LIMIT :limit)"
                " RETURNING id, body, deliveries",
                {
                    "queue": queue_name,
                    "now": now,
                    "limit": limit,
                    "until": now + self.visibility_timeout,
                    "owner": self.lease_owner,
                },
            )
        return sorted(rows), (None if rows else now)

    def _ack(self, row_id: int) -> None:
        """Deletes the row; returns once that is committed, by this thread or by another one
        whose commit took this ack along (acks waiting for the write lock go together)."""
        with self._unacked_lock:
            self._unacked.add(row_id)
        with self._writers.turn():
            with self._unacked_lock:
                if row_id not in self._unacked:
                    return  # deleted by the commit that held the lock meanwhile
                ids = sorted(self._unacked)
            deleted = {
                deleted_id
                for (deleted_id,) in self._locked_write(
                    "DELETE FROM queue_messages"
                    f" WHERE lease_owner = ? AND id IN ({','.join('?' * len(ids))})"
                    " RETURNING id",
                    (self.lease_owner, *ids),
                )
            }
            # Only once committed: should the commit fail, the acks stay for the next one
            # (each thread whose ack is still here commits it itself).
            with self._unacked_lock:
                self._unacked.difference_update(ids)
        for lost in sorted(set(ids) - deleted):
            logger.warning("Acked message row %d after its lease was lost.", lost)

    def _dead_letter(self, row_id: int, message: MessageProxy | None, reason: str) -> None:
        with self._transaction(durable=True) as db:
            row = db.execute(
                "DELETE FROM queue_messages WHERE id = ? AND lease_owner = ?"
                " RETURNING queue_name, message_id, body, deliveries",
                (row_id, self.lease_owner),
            ).fetchone()
            if row is None:
                logger.warning("Message row %d lost its lease before it was dead-lettered.", row_id)
                return
            queue_name, message_id, body, deliveries = row
            actor_name = ""
            if message is not None:
                # The message as it ended (with its options, e.g. a traceback).
                body, actor_name = bytes(message.encode()), message.actor_name
            db.execute(
                "INSERT INTO dead_letters (queue_name, message_id, actor_name, body, reason,"
                " errors, deliveries, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    queue_name,
                    message_id,
                    actor_name,
                    body,
                    reason,
                    "[]",
                    deliveries,
                    time.time(),
                ),
            )

    def _release(self, row_ids: Iterable[int]) -> None:
        """Gives leased messages back, undoing their delivery: they were never run."""
        ids = list(row_ids)
        if not ids:
            return
        queues = self._write(
            "UPDATE queue_messages"
            " SET leased_until = NULL, lease_owner = NULL, deliveries = MAX(deliveries - 1, 0)"
            f" WHERE lease_owner = ? AND id IN ({','.join('?' * len(ids))})"
            " RETURNING queue_name",
            (self.lease_owner, *ids),
        )
        self._ring_each(queues)

    def _ring_each(self, queues: Iterable[tuple[str]]) -> None:
        """Rings once for each queue named in these rows (messages given back)."""
        for queue_name in {queue for (queue,) in queues}:
            self._ring(queue_name)

    def _renew_leases(self) -> None:
        with self._writers.turn():  # the clock is read once the write lock is held
            self._locked_write(
                "UPDATE queue_messages SET leased_until = ? WHERE lease_owner = ?",
                (time.time() + self.visibility_timeout, self.lease_owner),
            )

    def _reclaim_abandoned(self) -> int:
        """Gives back at once the leases of this machine's processes that have died (a
        worker SIGKILLed), so that their messages run again now rather than once the leases
        run out; returns how many. A process that lives keeps its leases, as do processes
        this one cannot judge (other machines', other pid namespaces'): only the expiry
        tells that those died (lease_owners)."""
        with self._db() as db:
            owners = [
                owner
                for (owner,) in db.execute(
                    "SELECT DISTINCT lease_owner FROM queue_messages"
                    " WHERE lease_owner IS NOT NULL AND leased_until > ?",
                    (time.time(),),
                )
            ]
        dead = [owner for owner in owners if lease_owners.died_here(owner)]
        if not dead:
            return 0
        queues = self._write(
            "UPDATE queue_messages SET leased_until = NULL, lease_owner = NULL"
            f" WHERE lease_owner IN ({','.join('?' * len(dead))})"
            " RETURNING queue_name",
            dead,
        )
        self._ring_each(queues)
        if queues:
            logger.warning("Gave back %d message(s) leased by dead processes: %s", len(queues),
                           ", ".join(dead))  # fmt: skip
        return len(queues)


def _dead_letter_from_row(
    row_id: int,
    queue_name: str,
    message_id: str,
    actor_name: str,
    body: bytes,
    reason: str,
    deliveries: int,
    dead_at: float,
) -> DeadLetter:
    try:
        message: Message[Any] | None = Message.decode(body)
    except DecodeError:
        message = None
    return DeadLetter(
        id=row_id,
        queue_name=queue_name,
        message_id=message_id,
        actor_name=actor_name,
        message=message,
        body=body,
        reason=reason,
        deliveries=deliveries,
        dead_at=dead_at,
    )


class _DeliveryLimit(Middleware):
    """Gives up, instead of running it again, a message whose workers died each time.

    Skipping a failed message is how Dramatiq's own AgeLimit gives up: the actor does not run,
    `after_skip_message` is emitted instead of `after_process_message` (so no on_success
    callback or pipeline step), and the worker nacks it."""

    def __init__(self, max_deliveries: int) -> None:
        self.max_deliveries = max_deliveries

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if isinstance(message, SQLiteMessage) and message.deliveries > self.max_deliveries:
            message.fail()
            raise DeliveryLimitExceeded(
                f"delivered {message.deliveries} times without completing"
                " (its workers died while running it)"
            )


class _LeaseKeeper(threading.Thread):
    """Renews this process's leases three times per visibility timeout while it lives, and
    at its start and as often gives back those of this machine's dead processes."""

    def __init__(self, broker: SQLiteBroker) -> None:
        super().__init__(name="sqlite-broker-leases", daemon=True)
        self.broker = broker
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.broker._reclaim_abandoned()
            except Exception:
                logger.exception("Could not look for leases of dead processes; will try again.")
            if self.stopped.wait(self.broker.visibility_timeout / 3):
                return
            try:
                self.broker._renew_leases()
            except Exception:
                logger.exception("Could not renew message leases; will try again.")

    def stop(self) -> None:
        self.stopped.set()


class _SQLiteConsumer(Consumer):
    """Claims up to `prefetch` messages at a time. Its methods may be called from any of the
    worker's threads: acks come from the worker threads, claims from the consumer thread."""

    def __init__(
        self, broker: SQLiteBroker, queue_name: str, prefetch: int, doorbell: Doorbell
    ) -> None:
        self.broker = broker
        self.bell = doorbell.bell(queue_name)
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.claimed: deque[SQLiteMessage] = deque()
        self.outstanding: set[int] = set()
        # Notified when a message is done, so that a full consumer claims again at once.
        self.room = threading.Condition()

    def __next__(self) -> MessageProxy | None:
        if not self.claimed:
            with self.room:
                room = self.prefetch - len(self.outstanding)
                if room <= 0:
                    self.room.wait(self.broker.poll_interval)
                    return None
            generation = self.bell.generation()
            next_due = self._claim(room)
            if not self.claimed:
                self.bell.wait(generation, self._nap(next_due))
                return None
        return self.claimed.popleft()

    def _nap(self, next_due: float | None) -> float:
        """How long to sleep when nothing is due: until `next_due`, at most poll_interval
        (an enqueue or a message given back wakes the sleeper sooner)."""
        if next_due is None:
            return self.broker.poll_interval
        return min(self.broker.poll_interval, max(next_due - time.time(), 0.0))

    def _claim(self, limit: int) -> float | None:
        """Claims up to `limit` messages; when none, returns when to look again (_nap)."""
        rows, next_due = self.broker._claim(self.queue_name, limit)
        for row_id, body, deliveries in rows:
            try:
                message = Message.decode(body)
            except DecodeError as error:
                logger.error("Dead-lettering message row %d: %s", row_id, error)
                self.broker._dead_letter(row_id, None, describe_error(error.error))
                continue
            with self.room:
                self.outstanding.add(row_id)
            self.claimed.append(SQLiteMessage(message, row_id, deliveries))
        return next_due

    def _done(self, message: MessageProxy) -> int:
        if not isinstance(message, SQLiteMessage):
            raise TypeError(f"not a message from SQLiteBroker: {message!r}")
        with self.room:
            self.outstanding.discard(message.row_id)
            self.room.notify()
        return message.row_id

    def ack(self, message: MessageProxy) -> None:
        self.broker._ack(self._done(message))

    def nack(self, message: MessageProxy) -> None:
        self.broker._dead_letter(self._done(message), message, give_up_reason(message))

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self.broker._release(self._done(message) for message in messages)

    def close(self) -> None:
        self.requeue(list(self.claimed))
        self.claimed.clear()

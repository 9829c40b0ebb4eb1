"""Taking turns to write a SQLite file: the threads of a process, and the processes that share
the file (service replicas, job workers, the broker's enqueuers and consumers).

SQLite lets one writer in at a time and makes the others wait by polling: a writer that
finds the lock taken sleeps and tries again, 1, 2, 5, 10, 15, 20, 25... up to 100 ms between
tries, and has no place in a queue, so that under a steady load some writers miss their
turn again and again. With three processes writing the jobs table, CreateUser's enqueue
waited 200 ms at p99 and a job's start 400 ms at 150 welcomes a second. A writer therefore
first waits its turn where waiting is cheap and ends the moment the lock is free: behind
the other threads of its process on a lock, then behind the other processes on an flock of
a file beside the database, which the kernel hands on as soon as it is released. Its
BEGIN IMMEDIATE then finds SQLite's lock free (every writer of the file takes its turn the
same way); SQLite's own wait stays as the fallback for any writer that does not.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriterTurns:
    """The turns of the writers to one SQLite file; `turn()` holds one for its block (and is
    re-entrant: a transaction inside a transaction takes no second turn). `path` None: a
    database in memory, which only this process's threads share."""

    def __init__(self, path: str | Path | None) -> None:
        self.lock_path = None if path is None else Path(f"{path}-writers")
        self._forked = threading.Lock()  # taken only to set up again in a forked child
        self._threads: threading.RLock
        self._depth: int
        self._fd: int
        self._pid: int
        self._set_up()

    @contextmanager
    def turn(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._after_fork()
        with self._threads:
            if self._depth == 0 and self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd >= 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = -1

    def __del__(self) -> None:
        self.close()

    def _set_up(self) -> None:
        """This process's thread lock and its own open lock file."""
        self._threads = threading.RLock()
        self._depth = 0
        self._fd = -1
        if self.lock_path is not None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """A forked child opens the lock file again: an flock belongs to an open file, which
        parent and child would otherwise share (and so never exclude each other), and the
        parent's thread lock may be held by a thread the child does not have."""
        with self._forked:
            if self._pid != os.getpid():
                self._set_up()

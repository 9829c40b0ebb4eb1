"""Waking the SQLite broker's idle consumers as soon as a message is enqueued, in this process
or any other on the machine, instead of leaving them to find it at their next poll.

Every process that consumes from a broker file binds a Unix datagram socket in a directory
named after that file (`Doorbell`); an enqueuer sends the queue's name to each socket there
(`ring`), and only that queue's consumers wake: a process consumes several queues, and
waking all of its consumers for every message made each of them look, and most find
nothing. A consumer waits on its process's doorbell with a timeout, so the poll stays as a
fallback: a lost datagram (a full socket buffer, a process that was just starting) delays a
message by one poll interval at most, and never loses it, since the message is in the
database before anyone is woken.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)


def doorbell_directory(database: Path) -> Path:
    """Where the consumers of this broker file keep their sockets. Under the temporary
    directory with a short hashed name: a Unix socket path may not exceed 107 bytes."""
    digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mcsv-queue-{digest}"


class Doorbell:
    """This process's socket, and a `Bell` per queue its consumers wait on."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for _ in range(10):  # the last doorbell to close may remove the directory meanwhile
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self._socket.bind(str(self.path))
                break
            except FileNotFoundError:
                continue
        else:
            self._socket.close()
            raise FileNotFoundError(f"could not bind a doorbell in {directory}")
        self._bells: dict[str, Bell] = {}
        self._bells_lock = threading.Lock()
        self._closed = False
        self._listener = threading.Thread(target=self._listen, name="sqlite-broker-doorbell",
                                          daemon=True)  # fmt: skip
        self._listener.start()

    def bell(self, queue: str) -> Bell:
        """The bell this process's consumers of `queue` wait on."""
        with self._bells_lock:
            bell = self._bells.get(queue)
            if bell is None:
                bell = self._bells[queue] = Bell()
            return bell

    def _listen(self) -> None:
        while not self._closed:
            try:
                rung = self._socket.recv(256)
            except OSError:
                return  # closed
            self.bell(rung.decode(errors="replace")).wake()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._socket.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # the last one out removes the directory
            self.directory.rmdir()
        with self._bells_lock:
            bells = list(self._bells.values())
        for bell in bells:
            bell.wake()


class Bell:
    """One queue's waiting consumers in a process; `wait` returns when a process rings for
    the queue, or after the timeout."""

    def __init__(self) -> None:
        self._rung = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        """Take this before looking for messages, and pass it to `wait`: a ring that comes in
        between is not missed."""
        with self._rung:
            return self._generation

    def wait(self, generation: int, timeout: float) -> None:
        with self._rung:
            if self._generation == generation:
                self._rung.wait(timeout)

    def wake(self) -> None:
        with self._rung:
            self._generation += 1
            self._rung.notify_all()


def ring(directory: Path, sender: socket.socket, queue: str, here: Doorbell | None = None) -> None:
    """Wakes the consumers of `queue` in every consuming process of the broker whose
    doorbells are in `directory`; `here`, this process's doorbell, is rung directly rather
    than through its socket (which would wake its listener thread only to ring it). A socket
    nobody listens on any more (its process died) is removed."""
    own = None if here is None else str(here.path)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return  # nobody consumes yet
    for entry in entries:
        if not entry.name.endswith(".sock"):
            continue
        if entry.path == own:
            here.bell(queue).wake()  # type: ignore[union-attr]
            continue
        try:
            sender.sendto(queue.encode(), entry.path)
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        except (BlockingIOError, FileNotFoundError):
            pass  # its buffer is full (it will look anyway), or it just closed
        except OSError as error:
            logger.debug("could not ring %s: %s", entry.path, error)


def sender_socket() -> socket.socket:
    """An unbound, non-blocking datagram socket for `ring`: an enqueue never waits on a
    consumer."""
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    return sender

"""Waiting in a process's main thread for SIGTERM or SIGINT (StopSignals).

A Python signal handler runs in the main thread between two bytecodes, possibly in the middle
of whatever the main thread is doing, another handler included. A handler that sets a
threading.Event takes the Event's lock, which is not reentrant: when a second signal arrives
while the first handler is inside Event.set (two signals in a row, as from `timeout` and then
a supervisor), the second handler waits forever for a lock its own thread holds. (Seen: `just
up` sent SIGTERM and then SIGINT never exited.) queue.SimpleQueue's put is reentrant, documented
so for this kind of use, so the handlers here only put."""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Handles `signals` from now on; wait() returns once one has come."""

    def __init__(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        self._received: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.received = False
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        self._received.put(signum)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether a stop signal has come, waiting for one at most `timeout` seconds (None:
        until one comes)."""
        if self.received:
            return True
        try:
            self._received.get(timeout=timeout)
        except queue.Empty:
            return self.received
        return True

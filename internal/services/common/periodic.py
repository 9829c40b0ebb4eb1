"""A service's housekeeping that runs every so often in the background (job_svc resending
unsent messages, user_svc deleting expired uploads): a daemon thread calling a function at an
interval until the app shuts down, or, for work that only sometimes exists (job_svc's marks
of messages sent), an interval after it is said to be due, so that an idle process does not
wake for nothing. A failing run is logged and the next one comes anyway."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls `task` every `interval` seconds, the first time one interval after `start`.
    With `due`, a run comes one interval after `due` is set (and none while it is not): the
    event is cleared as the run begins, so that work made due during a run gets another."""

    def __init__(
        self,
        name: str,
        interval: float,
        task: Callable[[], object],
        *,
        due: threading.Event | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.name, self.interval, self.task, self.due = name, interval, task, due
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            if self.due is not None:
                self.due.wait()  # stop() sets it too
            if self._stopped.wait(self.interval):
                return
            if self.due is not None:
                self.due.clear()
            try:
                self.task()
            except Exception:
                log.exception("%s failed; trying again in %.1fs", self.name, self.interval)
                if self.due is not None:
                    self.due.set()

    def stop(self) -> None:
        self._stopped.set()
        if self.due is not None:
            self.due.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def closer(self) -> Callable[[], Awaitable[None]]:
        """An on_shutdown callback (service_app) that stops it."""

        async def stop() -> None:
            self.stop()

        return stop

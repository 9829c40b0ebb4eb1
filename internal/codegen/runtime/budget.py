"""A server-wide budget of request-body bytes held in memory at once, for TwirpApp.

A request whose body is large (more than SMALL_BODY_BYTES) reserves its Content-Length (a
body without one, chunked, reserves the largest body allowed) before its body is read, and
gives it back once its answer is ready: the body, the decoded message and the handler's work
on it all fit in the reservation. While it waits it reads nothing, so the ASGI server stops
reading its connection once its small buffer is full (hypercorn's app queue, uvicorn's flow
control) and TCP holds the rest of the body on the sender's side: a hundred concurrent
10 MB uploads cost the server its budget, not a gigabyte. Waiting is first come, first
served, and does not count against the body's read timeout, which starts once the body may
be read. A body larger than the whole budget waits until it has the budget to itself.

Small bodies (most RPCs) are never held up by the budget."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: Bodies up to this size are not counted: they never wait behind large ones.
SMALL_BODY_BYTES = 64 * 1024


class BodyBudget:
    """`limit` bytes to share; `reserve(n)` waits (in arrival order) until n fit."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a body budget must be at least 1 byte, got {limit}")
        self.limit = limit
        self.in_use = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Holds `size` bytes of the budget (all of it at most) for the block."""
        if size <= SMALL_BODY_BYTES:
            yield
            return
        size = min(size, self.limit)
        await self._acquire(size)
        try:
            yield
        finally:
            self._release(size)

    @property
    def waiting(self) -> int:
        """Requests waiting for budget."""
        return len(self._waiting)

    async def _acquire(self, size: int) -> None:
        if not self._waiting and self.in_use + size <= self.limit:
            self.in_use += size
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, granted)
        self._waiting.append(entry)
        try:
            await granted
        except BaseException:  # cancelled (the client went away) while waiting or once granted
            if granted.done() and not granted.cancelled():
                self._release(size)  # granted meanwhile: give it back
            else:
                self._waiting.remove(entry)
                self._grant()  # it may have held up smaller ones behind it
            raise

    def _release(self, size: int) -> None:
        self.in_use -= size
        self._grant()

    def _grant(self) -> None:
        """Lets the waiting requests in, in order, while they fit."""
        while self._waiting:
            size, granted = self._waiting[0]
            if self.in_use + size > self.limit:
                return
            self._waiting.popleft()
            self.in_use += size
            granted.set_result(None)

"""How the generated clients send their HTTP requests: a transport takes one HTTPRequest and
answers its HTTPResponse, or raises TransportError (ConnectFailed when no connection could
be made, so the request was not sent; TimedOut when the answer did not come in time).

SyncTransport and AsyncTransport are the seam for anything between a client and the network:
a transport may wrap another one to spread calls over replicas, trace them, count them. The
defaults are http11.py's, on plain sockets with httptools' parser, the fastest measured for
this; alternatives.py has transports on http.client, urllib3 and aiohttp (README, "Why the
generated clients use httptools").
"""

from __future__ import annotations

import select
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Protocol

# Well under the servers' keep-alive timeout (mcsv's: 60 s; uvicorn's default: 5 s), so that
# the client, not the server, retires an idle connection: a request is never sent on one the
# server is closing.
KEEPALIVE_SECONDS = 4.0
POOL_SIZE = 32  # idle connections kept per origin by the blocking transports (shared by threads)


@dataclass(slots=True)
class HTTPRequest:
    """A POST to `url`. `headers` may be changed by the transports it passes through (trace
    context); names are lower case. `timeout` (seconds) bounds the whole exchange."""

    url: str
    headers: MutableMapping[str, str]
    body: bytes
    timeout: float | None


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """An answer: status, headers (names lower case) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """No answer came: the connection failed or broke, or the answer was not HTTP."""


class ConnectFailed(TransportError):
    """No connection could be made; the request was not sent (safe to send elsewhere)."""


class TimedOut(TransportError):
    """The answer did not come within the request's timeout."""


class SyncTransport(Protocol):
    def send(self, request: HTTPRequest) -> HTTPResponse: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, request: HTTPRequest) -> HTTPResponse: ...

    async def aclose(self) -> None: ...


def describe(exc: BaseException) -> str:
    """An exception as one line: its type, and its message when it has one."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_header(line: str) -> None:
    """A header line (or the request line) that would split the request is refused."""
    if "\r" in line or "\n" in line or "\0" in line:
        raise ValueError(f"a request header may not contain CR, LF or NUL: {line!r}")


class Pollable(Protocol):
    """A socket as an event loop's transport shows it (asyncio's TransportSocket, uvloop's
    pseudo-socket): enough to poll."""

    def fileno(self) -> int: ...


def peer_spoke(sock: socket.socket | Pollable) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent
    what no request asked for); either way it cannot carry another request. (poll, not
    select: select refuses descriptors from 1024 up, which a busy process reaches.)"""
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN | select.POLLPRI)  # hang-ups and errors come too
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True

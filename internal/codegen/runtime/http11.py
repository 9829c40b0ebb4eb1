"""The generated clients' default transports: HTTP/1.1 on plain sockets (or TLS), each answer
parsed by httptools (llhttp, the parser uvicorn serves with), connections kept alive per
origin. HttptoolsSyncTransport blocks and is shared by threads; HttptoolsTransport runs on
the event loop's own connections.

The libraries that do the same exchange (http.client, urllib3, aiohttp: alternatives.py)
spend two to three times the client CPU per call on request and response objects, header
parsing in Python, cookie jars and timers (README, "Why the generated clients use
httptools"). What the defaults leave out: proxies from the environment, and requests other
than a POST with its whole body in memory, which is all a Twirp client sends.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import urllib.parse
from typing import cast

import httptools

from .transport import (
    KEEPALIVE_SECONDS,
    POOL_SIZE,
    ConnectFailed,
    HTTPRequest,
    HTTPResponse,
    Pollable,
    TimedOut,
    TransportError,
    check_header,
    describe,
    peer_spoke,
)

_Origin = tuple[str, str, int]  # scheme, host, port
# Headers the transports write themselves (a caller's would repeat or contradict them).
_SET_BY_THE_TRANSPORT = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_CLOSED_EARLY = "the connection closed before the answer was complete"


class _Targets:
    """Each URL's origin and the start of its request (request line and Host), remembered:
    a client sends to a handful of URLs."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[_Origin, bytes]] = {}

    def of(self, url: str) -> tuple[_Origin, bytes]:
        target = self._known.get(url)
        if target is None:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportError(f"not an http(s) URL: {url!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            check_header(path)
            check_header(parts.netloc)
            start = f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            target = ((parts.scheme, parts.hostname, port), start.encode("latin-1"))
            if len(self._known) < 1024:
                self._known[url] = target
        return target


def _failed(exc: OSError, request: HTTPRequest) -> TransportError:
    """What an exchange that broke with `exc` raises: TimedOut, or TransportError."""
    if isinstance(exc, TimeoutError):
        return TimedOut(f"no answer within {request.timeout} s")
    return TransportError(describe(exc))


def _request_bytes(start: bytes, request: HTTPRequest) -> bytes:
    """The whole request as sent: `start`, the caller's headers, the body."""
    head = [start, b"content-length: %d\r\n" % len(request.body)]
    for name, value in request.headers.items():
        if name not in _SET_BY_THE_TRANSPORT:
            line = f"{name}: {value}"
            check_header(line)
            head.append(line.encode("latin-1") + b"\r\n")
    head.append(b"\r\n")
    return b"".join(head) + request.body


class _AnswerReader:
    """Reads the answers arriving on one connection, one after another, from httptools'
    callbacks."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._headers_done = False
        self._answer: HTTPResponse | None = None
        self.keep_alive = True

    def feed(self, data: bytes) -> HTTPResponse | None:
        """The answer these bytes complete, or None while it is incomplete."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise TransportError(f"the answer is not HTTP/1.1: {exc}") from exc
        answer, self._answer = self._answer, None
        return answer

    def ended(self) -> HTTPResponse:
        """The server closed the connection: the answer when its body was delimited by
        the close (no content-length, not chunked), else TransportError."""
        framed = "content-length" in self._headers or "transfer-encoding" in self._headers
        if not self._headers_done or framed:
            raise TransportError(_CLOSED_EARLY)
        self.keep_alive = False
        return HTTPResponse(self._parser.get_status_code(), self._headers, b"".join(self._body))

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._headers, self._body, self._headers_done = {}, [], False

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        status = self._parser.get_status_code()
        self._answer = HTTPResponse(status, self._headers, b"".join(self._body))


class HttptoolsSyncTransport:
    """Blocking HTTP/1.1, the sync clients' default; thread-safe. Each exchange has a
    connection to itself; idle ones (at most `pool_size` per origin) are reused while
    younger than KEEPALIVE_SECONDS and not closed by the server meanwhile. `tls` verifies
    https servers (default: the system's certificate authorities)."""

    def __init__(self, pool_size: int = POOL_SIZE, tls: ssl.SSLContext | None = None) -> None:
        self._pool_size = pool_size
        self._tls = tls
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._targets = _Targets()

    def send(self, request: HTTPRequest) -> HTTPResponse:
        origin, start = self._targets.of(request.url)
        data = _request_bytes(start, request)
        connection = self._reused(origin) or self._connect(origin, request.timeout)
        try:
            answer = connection.exchange(data, request.timeout)
        except (TimeoutError, OSError) as exc:
            connection.close()  # in the middle of an exchange: never reused
            raise _failed(exc, request) from exc
        except BaseException:
            connection.close()
            raise
        if connection.reader.keep_alive:
            connection.idle_since = time.monotonic()
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < self._pool_size:
                    idle.append(connection)
                    return answer
        connection.close()
        return answer

    def _reused(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection to `origin` that is still open and fresh."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                connection = idle.pop()
            if now - connection.idle_since < KEEPALIVE_SECONDS and not peer_spoke(connection.sock):
                return connection
            connection.close()

    def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError as exc:
            raise TimedOut(f"connecting to {host}:{port}: {describe(exc)}") from exc
        except OSError as exc:  # refused, unreachable, a name that does not resolve
            raise ConnectFailed(f"connecting to {host}:{port}: {describe(exc)}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=host)
        except OSError as exc:  # the TLS handshake failed: nothing was sent
            sock.close()
            raise ConnectFailed(f"connecting to {host}:{port}: {describe(exc)}") from exc
        return _Connection(sock)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


class _Connection:
    """One blocking HTTP/1.1 connection."""

    __slots__ = ("idle_since", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _AnswerReader()
        self.idle_since = 0.0

    def exchange(self, request: bytes, timeout: float | None) -> HTTPResponse:
        """Sends the request and reads its answer, all within `timeout` (TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.sock.settimeout(timeout)
        self.sock.sendall(request)
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return self.reader.ended()
            answer = self.reader.feed(data)
            if answer is not None:
                return answer

    def close(self) -> None:
        self.sock.close()


class HttptoolsTransport:
    """asyncio HTTP/1.1, the async clients' default. At most `pool_size` exchanges run at
    once per origin (the others wait their turn); idle connections are kept
    KEEPALIVE_SECONDS. `tls` verifies https servers (default: the system's certificate
    authorities). Connections belong to the event loop that made them: used from another
    loop later (another asyncio.run), it starts afresh."""

    def __init__(self, pool_size: int = 100, tls: ssl.SSLContext | None = None) -> None:
        self._pool_size = pool_size
        self._tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[_Origin, list[_Exchange]] = {}
        self._turns: dict[_Origin, asyncio.Semaphore] = {}
        self._targets = _Targets()

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # another loop's connections cannot serve this one
            self._loop, self._idle, self._turns = loop, {}, {}
        origin, start = self._targets.of(request.url)
        data = _request_bytes(start, request)
        turns = self._turns.get(origin)
        if turns is None:
            turns = self._turns[origin] = asyncio.Semaphore(self._pool_size)
        async with turns:
            exchange: _Exchange | None = None
            try:
                async with asyncio.timeout(request.timeout):
                    exchange = self._reused(origin) or await self._connect(loop, origin)
                    answer = await exchange.send(data)
            except BaseException as exc:
                if exchange is not None:
                    exchange.close()  # in the middle of an exchange: never reused
                if isinstance(exc, OSError):  # TimeoutError too
                    raise _failed(exc, request) from exc
                raise
            if exchange.reader.keep_alive and not exchange.closed:
                exchange.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(exchange)
            else:
                exchange.close()
            return answer

    def _reused(self, origin: _Origin) -> _Exchange | None:
        """The most recently used idle connection to `origin` that is still open and fresh.
        Its socket is asked too: a server's close that the event loop has not yet read (it
        was busy, or not running between two asyncio.run) would otherwise fail the request
        sent on it, as "closed before the answer was complete"."""
        idle = self._idle.get(origin)
        while idle:
            exchange = idle.pop()
            if (
                not exchange.closed
                and time.monotonic() - exchange.idle_since < KEEPALIVE_SECONDS
                and (exchange.socket is None or not peer_spoke(exchange.socket))
            ):
                return exchange
            exchange.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: _Origin) -> _Exchange:
        scheme, host, port = origin
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            _, exchange = await loop.create_connection(
                _Exchange, host, port, ssl=tls, server_hostname=host if tls else None
            )
        except OSError as exc:  # refused, unreachable, a name that does not resolve, TLS
            raise ConnectFailed(describe(exc)) from exc
        return exchange

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        if self._loop is not asyncio.get_running_loop():
            return  # another loop's connections, gone with it
        for exchanges in idle.values():
            for exchange in exchanges:
                exchange.close()


class _Exchange(asyncio.Protocol):
    """One asyncio HTTP/1.1 connection: sends a request, and reads its answer as it arrives."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[HTTPResponse] | None = None
        self.reader = _AnswerReader()
        self.closed = False
        self.idle_since = 0.0
        self.socket: Pollable | None = None  # the connection's, once made

    async def send(self, request: bytes) -> HTTPResponse:
        assert self._transport is not None and self._answer is None
        if self.closed:
            raise TransportError(_CLOSED_EARLY)
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._answer
        finally:
            self._answer = None

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self.socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():  # unasked: not a server to talk to
            self.close()
            return
        try:
            answer = self.reader.feed(data)
        except TransportError as exc:
            self._answer.set_exception(exc)
            self.close()
            return
        if answer is not None:
            self._answer.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is None or self._answer.done():
            return
        try:
            self._answer.set_result(self.reader.ended())
        except TransportError as error:
            self._answer.set_exception(error)

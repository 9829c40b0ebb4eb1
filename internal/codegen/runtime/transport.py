"""How the generated clients send their HTTP requests: a transport takes one HTTPRequest and
answers its HTTPResponse, or raises TransportError (ConnectFailed when no connection could
be made, so the request was not sent; TimedOut when the answer did not come in time).

SyncTransport and AsyncTransport are the seam for anything between a client and the network:
a transport may wrap another one to spread calls over replicas, trace them, count them. The
defaults are HttpClientTransport (blocking, thread-safe) and HttptoolsTransport (asyncio),
the fastest measured for this; Urllib3Transport and AiohttpTransport are there for those
who want urllib3 or aiohttp (README, "Why the generated clients use http.client and
httptools").
"""

from __future__ import annotations

import asyncio
import http.client
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Protocol, cast

import aiohttp
import httptools
import urllib3

# Well under the servers' keep-alive timeout (mcsv's: 60 s; uvicorn's default: 5 s), so that
# the client, not the server, retires an idle connection: a request is never sent on one the
# server is closing.
KEEPALIVE_SECONDS = 4.0
POOL_SIZE = 32  # connections kept per host (the sync clients are shared by threads)


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


class Urllib3Transport:
    """Blocking HTTP/1.1 with connection reuse (urllib3's connection pools); thread-safe.
    It goes to the host's pool directly, not through PoolManager.request, which parses the
    URL and rebuilds the pool key, retries and timeout objects on every call (a quarter of
    a call's client CPU, measured)."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool = urllib3.PoolManager(maxsize=pool_size, retries=False)
        self._targets: dict[str, tuple[str, str, int | None, str]] = {}
        self._timeouts: dict[float | None, urllib3.Timeout] = {}

    def _target(self, url: str) -> tuple[str, str, int | None, str]:
        """(scheme, host, port, path with query) of a URL, remembered: a client sends to a
        handful of URLs."""
        target = self._targets.get(url)
        if target is None:
            parts = urllib3.util.parse_url(url)
            target = (parts.scheme or "http", parts.host or "", parts.port, parts.request_uri)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    def _timeout(self, seconds: float | None) -> urllib3.Timeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = urllib3.Timeout(total=seconds)
        return timeout

    def send(self, request: HTTPRequest) -> HTTPResponse:
        scheme, host, port, path = self._target(request.url)
        try:
            pool = self._pool.connection_from_host(host, port, scheme)
            answer = pool.urlopen(
                "POST",
                path,
                body=request.body,
                headers=dict(request.headers),
                timeout=self._timeout(request.timeout),
                redirect=False,
                retries=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # before ConnectTimeoutError:
            raise ConnectFailed(_describe(exc)) from exc  # older urllib3 derive one from it
        except urllib3.exceptions.TimeoutError as exc:
            raise TimedOut(_describe(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(_describe(exc)) from exc
        headers = {name.lower(): value for name, value in answer.headers.items()}
        return HTTPResponse(answer.status, headers, answer.data)

    def close(self) -> None:
        self._pool.clear()


_Key = tuple[str, str, int | None]  # scheme, host, port


class HttpClientTransport:
    """Blocking HTTP/1.1 on the standard library's http.client, with connection reuse;
    thread-safe. The sync clients' default: it spends half the CPU per call of urllib3,
    which builds its pools, retries and response objects on top of the same http.client
    (README, "Why the generated clients use http.client and httptools"). An idle connection is
    reused while younger than KEEPALIVE_SECONDS and not closed by the server meanwhile."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._idle: dict[_Key, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._targets: dict[str, tuple[str, str, int | None, str]] = {}

    def _target(self, url: str) -> tuple[str, str, int | None, str]:
        target = self._targets.get(url)
        if target is None:
            parts = urllib.parse.urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = (parts.scheme or "http", parts.hostname or "", parts.port, path)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    def _reused(self, key: _Key) -> http.client.HTTPConnection | None:
        """An idle connection to reuse, or None."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                connection, since = idle.pop()
            sock = connection.sock
            if now - since < KEEPALIVE_SECONDS and sock is not None and not _readable(sock):
                return connection
            connection.close()  # retired, or closed (or talking) by the server meanwhile

    def send(self, request: HTTPRequest) -> HTTPResponse:
        scheme, host, port, path = self._target(request.url)
        key = (scheme, host, port)
        connection = self._reused(key)
        try:
            if connection is None:
                connection = _connect(scheme, host, port, request.timeout)
            elif connection.sock is not None:
                connection.sock.settimeout(request.timeout)
            connection.request("POST", path, body=request.body, headers=request.headers)
            answer = connection.getresponse()
            body = answer.read()
        except TimeoutError as exc:
            _close(connection)
            raise TimedOut(_describe(exc) or "timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            _close(connection)
            raise TransportError(_describe(exc)) from exc
        headers = {name.lower(): value for name, value in answer.getheaders()}
        if answer.will_close:
            connection.close()
        else:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._pool_size:
                    idle.append((connection, time.monotonic()))
                    connection = None
            if connection is not None:
                connection.close()
        return HTTPResponse(answer.status, headers, body)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection, _ in connections:
                connection.close()


def _connect(
    scheme: str, host: str, port: int | None, timeout: float | None
) -> http.client.HTTPConnection:
    """A connected connection; ConnectFailed (or TimedOut) when none could be made."""
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=timeout)
    try:
        connection.connect()
    except TimeoutError as exc:
        connection.close()
        raise TimedOut(f"connecting to {host}:{port}: {_describe(exc)}") from exc
    except OSError as exc:
        connection.close()
        raise ConnectFailed(f"connecting to {host}:{port}: {_describe(exc)}") from exc
    return connection


def _close(connection: http.client.HTTPConnection | None) -> None:
    if connection is not None:
        connection.close()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent
    what no request asked for); either way it cannot carry another request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class AiohttpTransport:
    """asyncio HTTP/1.1 with connection reuse (aiohttp). Its session is made on the first
    request, inside the event loop it then belongs to (and made again should the transport
    be used from another loop later, e.g. after another asyncio.run)."""

    def __init__(self, pool_size: int = 100) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
        )
        return self._session

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = self._open()
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout(request.timeout),
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                headers = {name.lower(): value for name, value in answer.headers.items()}
                return HTTPResponse(answer.status, headers, body)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(_describe(exc)) from exc
        except TimeoutError as exc:  # aiohttp's own (ServerTimeoutError) derive from it
            raise TimedOut(_describe(exc) or "timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(_describe(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttptoolsTransport:
    """asyncio HTTP/1.1 on the event loop's own connections, each answer parsed by httptools
    (llhttp, the parser uvicorn serves with), connections kept alive per origin: the async
    clients' default. aiohttp does the same exchange through its request and response
    objects, cookie jar, timers and stream readers, at three times the CPU per call (README,
    "Why the generated clients use http.client and httptools").

    At most `pool_size` exchanges run at once per origin (the others wait their turn); idle
    connections are kept KEEPALIVE_SECONDS. Connections belong to the event loop that made
    them: used from another loop later (another asyncio.run), it starts afresh."""

    def __init__(self, pool_size: int = 100) -> None:
        self._pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[_Origin, list[_Exchange]] = {}
        self._turns: dict[_Origin, asyncio.Semaphore] = {}
        self._targets: dict[str, tuple[_Origin, bytes]] = {}
        self._tls: ssl.SSLContext | None = None

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        """A URL's origin and the start of its request (request line and Host), remembered:
        a client sends to a handful of URLs."""
        target = self._targets.get(url)
        if target is None:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportError(f"not an http(s) URL: {url!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            _check_header(path)
            _check_header(parts.netloc)
            start = f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            target = ((parts.scheme, parts.hostname, port), start.encode("latin-1"))
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # another loop's connections cannot serve this one
            self._loop, self._idle, self._turns = loop, {}, {}
        origin, start = self._target(request.url)
        head = [start, b"content-length: %d\r\n" % len(request.body)]
        for name, value in request.headers.items():
            if name not in _SET_BY_THE_TRANSPORT:
                line = f"{name}: {value}"
                _check_header(line)
                head.append(line.encode("latin-1") + b"\r\n")
        head.append(b"\r\n")
        turns = self._turns.get(origin)
        if turns is None:
            turns = self._turns[origin] = asyncio.Semaphore(self._pool_size)
        async with turns:
            exchange: _Exchange | None = None
            try:
                async with asyncio.timeout(request.timeout):
                    exchange = self._reused(origin) or await self._connect(loop, origin)
                    answer = await exchange.send(b"".join(head) + request.body)
            except BaseException as exc:
                if exchange is not None:
                    exchange.close()  # in the middle of an exchange: never reused
                if isinstance(exc, TimeoutError):
                    raise TimedOut(f"no answer within {request.timeout} s") from exc
                if isinstance(exc, OSError):
                    raise TransportError(_describe(exc)) from exc
                raise
            if exchange.keep_alive and not exchange.closed:
                exchange.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(exchange)
            else:
                exchange.close()
            return answer

    def _reused(self, origin: _Origin) -> _Exchange | None:
        """The most recently used idle connection to `origin` that is still open and fresh."""
        idle = self._idle.get(origin)
        while idle:
            exchange = idle.pop()
            if not exchange.closed and time.monotonic() - exchange.idle_since < KEEPALIVE_SECONDS:
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
            raise ConnectFailed(_describe(exc)) from exc
        return exchange

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        if self._loop is not asyncio.get_running_loop():
            return  # another loop's connections, gone with it
        for exchanges in idle.values():
            for exchange in exchanges:
                exchange.close()


_Origin = tuple[str, str, int]  # scheme, host, port
# Headers HttptoolsTransport writes itself (a caller's would repeat or contradict them).
_SET_BY_THE_TRANSPORT = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _check_header(line: str) -> None:
    """A header line (or the request line) that would split the request is refused."""
    if "\r" in line or "\n" in line or "\0" in line:
        raise ValueError(f"a request header may not contain CR, LF or NUL: {line!r}")


class _Exchange(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, and parses its answer as it arrives."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[HTTPResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.keep_alive = True
        self.closed = False
        self.idle_since = 0.0

    async def send(self, request: bytes) -> HTTPResponse:
        assert self._transport is not None and self._answer is None
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

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # nothing was asked: not a server to keep talking to
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"the answer is not HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(TransportError("the connection closed before the answer was complete"))

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._headers, self._body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        status = self._parser.get_status_code()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(HTTPResponse(status, self._headers, b"".join(self._body)))

    def _fail(self, error: TransportError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""Transports on other HTTP libraries, for those who want them: HttpClientTransport
(blocking, the standard library's http.client), Urllib3Transport (blocking, urllib3) and
AiohttpTransport (asyncio, aiohttp). Each does what the defaults in http11.py do at more CPU
per call (README, "Why the generated clients use httptools")."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
import urllib.parse

import aiohttp
import urllib3

from .transport import (
    KEEPALIVE_SECONDS,
    POOL_SIZE,
    ConnectFailed,
    HTTPRequest,
    HTTPResponse,
    TimedOut,
    TransportError,
    describe,
    peer_spoke,
)


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
            raise ConnectFailed(describe(exc)) from exc  # older urllib3 derive one from it
        except urllib3.exceptions.TimeoutError as exc:
            raise TimedOut(describe(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(describe(exc)) from exc
        headers = {name.lower(): value for name, value in answer.headers.items()}
        return HTTPResponse(answer.status, headers, answer.data)

    def close(self) -> None:
        self._pool.clear()


_Key = tuple[str, str, int | None]  # scheme, host, port


class HttpClientTransport:
    """Blocking HTTP/1.1 on the standard library's http.client, with connection reuse;
    thread-safe. Half the CPU per call of urllib3, which builds its pools, retries and
    response objects on top of the same http.client; http.client's own header parsing (the
    email package) is what HttptoolsSyncTransport saves. An idle connection is reused while
    younger than KEEPALIVE_SECONDS and not closed by the server meanwhile."""

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
            if now - since < KEEPALIVE_SECONDS and sock is not None and not peer_spoke(sock):
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
            raise TimedOut(describe(exc) or "timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            _close(connection)
            raise TransportError(describe(exc)) from exc
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
        raise TimedOut(f"connecting to {host}:{port}: {describe(exc)}") from exc
    except OSError as exc:
        connection.close()
        raise ConnectFailed(f"connecting to {host}:{port}: {describe(exc)}") from exc
    return connection


def _close(connection: http.client.HTTPConnection | None) -> None:
    if connection is not None:
        connection.close()


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
            raise ConnectFailed(describe(exc)) from exc
        except TimeoutError as exc:  # aiohttp's own (ServerTimeoutError) derive from it
            raise TimedOut(describe(exc) or "timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(describe(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The generated clients' transport seam (mcsv.twirp.SyncTransport/AsyncTransport) as the
services' peers use it: a transport wrapping the default sees every request (and may add
headers), the balancing transports go on to the next replica when one refuses the connection,
an async client keeps working across event loops, and the default transports read every
framing of an answer, over TLS too, and tell the ways an exchange fails apart."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from mcsv.twirp import (
    AiohttpTransport,
    AsyncTransport,
    ConnectFailed,
    HttpClientTransport,
    HTTPRequest,
    HTTPResponse,
    HttptoolsSyncTransport,
    HttptoolsTransport,
    TimedOut,
    TransportError,
    Urllib3Transport,
)
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient

from internal.rpc.balance import BalancedSyncTransport, BalancedTransport, Replicas
from tests.support.servers import free_port
from tests.support.tls import Pki, make_pki

EMPTY = job_pb2.GetJobRequest()


class Recording:
    """A SyncTransport that records what it is handed and adds a header."""

    def __init__(self) -> None:
        self.inner = Urllib3Transport()
        self.seen: list[HTTPRequest] = []

    def send(self, request: HTTPRequest) -> HTTPResponse:
        request.headers["x-added-by-the-transport"] = "yes"
        self.seen.append(request)
        return self.inner.send(request)

    def close(self) -> None:
        self.inner.close()


def test_a_wrapping_transport_sees_each_request(echo_url: str) -> None:
    recording = Recording()
    tokens = iter(["first", "second"])
    with JobServiceClient(echo_url, transport=recording, credentials=lambda: next(tokens)) as c:
        assert c.get_job(EMPTY) == job_pb2.GetJobResponse()
        assert c.get_job(EMPTY, headers={"X-Call": "2"}) == job_pb2.GetJobResponse()
    assert [r.headers["authorization"] for r in recording.seen] == [
        "Bearer first", "Bearer second",
    ]  # fmt: skip
    assert recording.seen[1].headers["x-call"] == "2"
    assert recording.seen[0].url == f"{echo_url}/twirp/mcsv.v1.JobService/GetJob"
    recording.close()  # a handed transport stays open after the client closes
    assert all(r.headers["x-added-by-the-transport"] == "yes" for r in recording.seen)


def test_balanced_sync_calls_skip_a_replica_that_refuses(echo_url: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    transport = BalancedSyncTransport(Replicas([down, echo_url]))
    with JobServiceClient(down, transport=transport) as client:
        for _ in range(4):  # each replica's turn comes
            assert client.get_job(EMPTY) == job_pb2.GetJobResponse()
    transport.close()


@pytest.mark.anyio
async def test_balanced_async_calls_skip_a_replica_that_refuses(echo_url: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    transport = BalancedTransport(Replicas([down, echo_url]))
    async with AsyncJobServiceClient(down, transport=transport) as client:
        for _ in range(4):
            assert await client.get_job(EMPTY) == job_pb2.GetJobResponse()
    await transport.aclose()


@pytest.mark.parametrize("make", [HttptoolsTransport, AiohttpTransport])
def test_an_async_transport_serves_one_event_loop_after_another(
    echo_url: str, make: Callable[[], AsyncTransport]
) -> None:
    transport = make()
    client = AsyncJobServiceClient(echo_url, transport=transport)
    for _ in range(2):  # e.g. two asyncio.run in one program
        assert asyncio.run(client.get_job(EMPTY)) == job_pb2.GetJobResponse()
    asyncio.run(transport.aclose())


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class _OneAnswerPerConnection:
    """An HTTP server that answers one request per connection and then closes it without
    saying so (no Connection: close), as a server retiring an idle keep-alive connection.
    With `tls` it speaks TLS; with `linger`, it closes that many seconds after answering."""

    def __init__(
        self, answer: bytes = OK, tls: ssl.SSLContext | None = None, linger: float = 0.0
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.linger = linger
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}/twirp/x.Y/Z"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls is not None:
                    connection = self.tls.wrap_socket(connection, server_side=True)
                with connection:
                    received = b""
                    while b"\r\n\r\n" not in received:
                        received += connection.recv(65536)
                    connection.sendall(self.answer)
                    time.sleep(self.linger)
            except OSError:
                pass  # a client that gave up, or refused the certificate

    def close(self) -> None:
        self.listener.close()


class _Blocking:
    """An async transport driven from blocking code, on one event loop throughout, so that
    the same tests read both default transports."""

    def __init__(self, transport: HttptoolsTransport) -> None:
        self.transport = transport
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return self.runner.run(self.transport.send(request))

    def close(self) -> None:
        self.runner.run(self.transport.aclose())
        self.runner.close()


Blocking = HttptoolsSyncTransport | HttpClientTransport | _Blocking
BLOCKING: dict[str, Callable[..., Blocking]] = {
    "httptools-sync": HttptoolsSyncTransport,
    "http.client": HttpClientTransport,
}
DEFAULTS: dict[str, Callable[..., Blocking]] = {
    "httptools-sync": HttptoolsSyncTransport,
    "httptools-async": lambda **tls: _Blocking(HttptoolsTransport(**tls)),
}


def _idle(transport: HttptoolsSyncTransport | HttpClientTransport) -> int:
    return sum(len(pool) for pool in transport._idle.values())


def _post(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> HTTPRequest:
    return HTTPRequest(
        url, {"content-type": "application/protobuf", **(headers or {})}, b"\n\x01x", timeout
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.mark.parametrize("make", BLOCKING.values(), ids=BLOCKING.keys())
def test_a_sync_transport_does_not_reuse_a_connection_the_server_closed(
    make: Callable[[], Blocking],
) -> None:
    server = _OneAnswerPerConnection()
    transport = make()
    try:
        for _ in range(3):
            answer = transport.send(_post(server.url))
            assert (answer.status, answer.body) == (200, b"ok")
            time.sleep(0.1)  # the server has closed the connection meanwhile
        assert server.connections == 3
    finally:
        transport.close()
        server.close()


@pytest.mark.parametrize("make", BLOCKING.values(), ids=BLOCKING.keys())
def test_a_sync_transport_reuses_a_kept_alive_connection(
    echo_url: str, make: Callable[[], HttptoolsSyncTransport | HttpClientTransport]
) -> None:
    transport = make()
    with JobServiceClient(echo_url, transport=transport) as client:
        for _ in range(3):
            assert client.get_job(EMPTY) == job_pb2.GetJobResponse()
        with concurrent.futures.ThreadPoolExecutor(4) as threads:  # at once: four connections
            answers = list(threads.map(lambda _: client.get_job(EMPTY), range(40)))
        assert answers == [job_pb2.GetJobResponse()] * 40
    assert 1 <= _idle(transport) <= 4
    transport.close()
    assert _idle(transport) == 0


def test_the_sync_clients_send_with_httptools_by_default(echo_url: str) -> None:
    with JobServiceClient(echo_url) as client:
        assert isinstance(client.transport, HttptoolsSyncTransport)
        assert client.get_job(EMPTY) == job_pb2.GetJobResponse()


@pytest.mark.parametrize("make", [*BLOCKING.values(), DEFAULTS["httptools-async"]],
                         ids=[*BLOCKING.keys(), "httptools-async"])  # fmt: skip
def test_a_transport_tells_a_refused_connection_and_a_timeout_apart(
    make: Callable[[], Blocking],
) -> None:
    transport = make()
    with pytest.raises(ConnectFailed):
        transport.send(_post(f"http://127.0.0.1:{free_port()}/twirp/x.Y/Z"))
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            transport.send(_post(f"http://127.0.0.1:{silent.getsockname()[1]}/x", 0.3))
        assert time.monotonic() - started < 3
    finally:
        silent.close()
        transport.close()


@pytest.mark.anyio
async def test_the_async_transport_reuses_kept_alive_connections(echo_url: str) -> None:
    transport = HttptoolsTransport()
    async with AsyncJobServiceClient(echo_url, transport=transport) as client:
        for _ in range(3):
            assert await client.get_job(EMPTY) == job_pb2.GetJobResponse()
        calls = [client.get_job(EMPTY) for _ in range(5)]  # at once: five connections
        assert await asyncio.gather(*calls) == [job_pb2.GetJobResponse()] * 5
    idle = [exchange for pool in transport._idle.values() for exchange in pool]
    assert len(idle) == 5 and not any(exchange.closed for exchange in idle)
    await transport.aclose()
    assert all(exchange.closed for exchange in idle)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-twice: a\r\nx-twice: b\r\n\r\n"
    b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"
)
CLOSING = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy"
UNTIL_THE_END = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall that comes"
HTTP_1_0 = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall that comes"


@pytest.mark.parametrize("make", DEFAULTS.values(), ids=DEFAULTS.keys())
@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [(CHUNKED, 200, b"ok!!!"), (CLOSING, 503, b"busy"), (UNTIL_THE_END, 200, b"all that comes"),
     (HTTP_1_0, 200, b"all that comes")],
    ids=["chunked", "content-length then close", "close-delimited", "HTTP/1.0"],
)  # fmt: skip
def test_a_default_transport_reads_every_framing_and_reuses_no_closed_connection(
    make: Callable[[], Blocking], raw: bytes, status: int, body: bytes
) -> None:
    transport = make()
    server = _OneAnswerPerConnection(raw)  # which closes each connection after its answer
    try:
        for _ in range(3):
            answer = transport.send(_post(server.url))
            assert (answer.status, answer.body) == (status, body)
            if raw is CHUNKED:
                assert answer.headers["x-twice"] == "a, b"
            time.sleep(0.1)  # the server has closed the connection meanwhile
        assert server.connections == 3
    finally:
        server.close()
        transport.close()


@pytest.mark.parametrize("make", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_close_that_came_while_the_connection_sat_idle_is_seen_before_reuse(
    make: Callable[[], Blocking],
) -> None:
    """The server closes after the client has taken its answer and put the connection back:
    for the async transport, while no event loop ran to read the close (between two
    asyncio.run, or with a loop busy elsewhere). The next request goes on a new connection."""
    transport = make()
    server = _OneAnswerPerConnection(OK, linger=0.05)
    try:
        for _ in range(3):
            answer = transport.send(_post(server.url))
            assert (answer.status, answer.body) == (200, b"ok")
            time.sleep(0.2)  # the server closes meanwhile
        assert server.connections == 3
    finally:
        server.close()
        transport.close()


@pytest.mark.parametrize("make", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_default_transport_tells_broken_and_not_http_apart(
    make: Callable[[], Blocking],
) -> None:
    transport = make()
    cut = _OneAnswerPerConnection(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nonly")
    headless = _OneAnswerPerConnection(b"HTTP/1.1 200 OK\r\ncontent-le")
    garbage = _OneAnswerPerConnection(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        for broken in (cut, headless):
            with pytest.raises(TransportError, match="closed before the answer was complete"):
                transport.send(_post(broken.url))
        with pytest.raises(TransportError, match="not HTTP"):
            transport.send(_post(garbage.url))
    finally:
        for server in (cut, headless, garbage):
            server.close()
        transport.close()


@pytest.mark.parametrize("make", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_default_transport_speaks_verified_tls(pki: Pki, make: Callable[..., Blocking]) -> None:
    server = _OneAnswerPerConnection(OK, tls=pki.server_context())
    trusting, default = make(tls=pki.client_context()), make()
    try:
        answer = trusting.send(_post(server.url))
        assert (answer.status, answer.body) == (200, b"ok")
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            default.send(_post(server.url))  # the system's authorities do not know this one
        wrong_name = _post(server.url.replace("127.0.0.1", "localhost.invalid"))
        with pytest.raises(ConnectFailed):
            trusting.send(wrong_name)
    finally:
        server.close()
        trusting.close()
        default.close()


@pytest.mark.parametrize("make", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_default_transport_refuses_a_header_that_would_split_the_request(
    echo_url: str, make: Callable[[], Blocking]
) -> None:
    transport = make()
    url = f"{echo_url}/twirp/mcsv.v1.JobService/GetJob"
    for bad in ("x\r\nx-injected: yes", "x\ny", "x\0y"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            transport.send(_post(url, headers={"x-note": bad}))
    with pytest.raises(TransportError, match="not an http"):
        transport.send(_post("ftp://127.0.0.1/x"))
    empty = HTTPRequest(url, {"content-type": "application/protobuf"}, b"", 5.0)
    assert transport.send(empty).status == 200  # the transport still works
    transport.close()


def test_the_async_transport_runs_on_uvloop_as_the_services_do(echo_url: str) -> None:
    async def calls() -> list[job_pb2.GetJobResponse]:
        transport = HttptoolsTransport()
        async with AsyncJobServiceClient(echo_url, transport=transport) as client:
            answers = [await client.get_job(EMPTY) for _ in range(3)]
        await transport.aclose()
        return answers

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(asyncio.wait_for(calls(), 10)) == [job_pb2.GetJobResponse()] * 3

"""The generated clients' transport seam (mcsv.twirp.SyncTransport/AsyncTransport) as the
services' peers use it: a transport wrapping the default sees every request (and may add
headers), the balancing transports go on to the next replica when one refuses the connection,
and an async client keeps working across event loops."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest
from mcsv.twirp import (
    AiohttpTransport,
    AsyncTransport,
    ConnectFailed,
    HttpClientTransport,
    HTTPRequest,
    HTTPResponse,
    HttptoolsTransport,
    TimedOut,
    TransportError,
    Urllib3Transport,
)
from mcsv.v1 import job_pb2
from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient

from internal.rpc.balance import BalancedSyncTransport, BalancedTransport, Replicas
from tests.support.servers import free_port

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
    saying so (no Connection: close), as a server retiring an idle keep-alive connection."""

    def __init__(self, answer: bytes = OK) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/twirp/x.Y/Z"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536)
                connection.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


def test_the_sync_transport_does_not_reuse_a_connection_the_server_closed() -> None:
    server = _OneAnswerPerConnection()
    transport = HttpClientTransport()
    try:
        for _ in range(3):
            request = HTTPRequest(server.url, {"content-type": "application/protobuf"}, b"", 5.0)
            answer = transport.send(request)
            assert (answer.status, answer.body) == (200, b"ok")
            time.sleep(0.1)  # the server has closed the connection meanwhile
        assert server.connections == 3
    finally:
        transport.close()
        server.close()


def test_the_sync_transport_reuses_a_kept_alive_connection(echo_url: str) -> None:
    transport = HttpClientTransport()
    with JobServiceClient(echo_url, transport=transport) as client:
        for _ in range(3):
            assert client.get_job(EMPTY) == job_pb2.GetJobResponse()
    idle = [connection for pool in transport._idle.values() for connection, _ in pool]
    assert len(idle) == 1  # one connection carried the three calls
    transport.close()


def test_the_sync_transport_tells_a_refused_connection_and_a_timeout_apart() -> None:
    transport = HttpClientTransport()
    refused = HTTPRequest(f"http://127.0.0.1:{free_port()}/twirp/x.Y/Z", {}, b"", 5.0)
    with pytest.raises(ConnectFailed):
        transport.send(refused)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        quiet = HTTPRequest(f"http://127.0.0.1:{silent.getsockname()[1]}/x", {}, b"", 0.3)
        with pytest.raises(TimedOut):
            transport.send(quiet)
    finally:
        silent.close()
        transport.close()


def _post(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> HTTPRequest:
    return HTTPRequest(
        url, {"content-type": "application/protobuf", **(headers or {})}, b"\n\x01x", timeout
    )


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


@pytest.mark.anyio
async def test_the_async_transport_reads_every_framing_and_reuses_no_closed_connection() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-twice: a\r\nx-twice: b\r\n\r\n"
        b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"
    )
    closing = (
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy"
    )
    transport = HttptoolsTransport()
    for raw, status, body in [(chunked, 200, b"ok!!!"), (closing, 503, b"busy")]:
        server = _OneAnswerPerConnection(raw)  # which closes each connection after its answer
        try:
            for _ in range(3):
                answer = await transport.send(_post(server.url))
                assert (answer.status, answer.body) == (status, body)
                if status == 200:
                    assert answer.headers["x-twice"] == "a, b"
                await asyncio.sleep(0.1)  # the server has closed the connection meanwhile
            assert server.connections == 3
        finally:
            server.close()
    await transport.aclose()


@pytest.mark.anyio
async def test_the_async_transport_tells_refused_timed_out_broken_and_not_http_apart() -> None:
    transport = HttptoolsTransport()
    with pytest.raises(ConnectFailed):
        await transport.send(_post(f"http://127.0.0.1:{free_port()}/twirp/x.Y/Z"))
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    cut = _OneAnswerPerConnection(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nonly")
    garbage = _OneAnswerPerConnection(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        with pytest.raises(TimedOut):
            await transport.send(_post(f"http://127.0.0.1:{silent.getsockname()[1]}/x", 0.3))
        with pytest.raises(TransportError, match="closed before the answer was complete"):
            await transport.send(_post(cut.url))
        with pytest.raises(TransportError, match="not HTTP"):
            await transport.send(_post(garbage.url))
    finally:
        silent.close()
        cut.close()
        garbage.close()
        await transport.aclose()


@pytest.mark.anyio
async def test_the_async_transport_refuses_a_header_that_would_split_the_request(
    echo_url: str,
) -> None:
    transport = HttptoolsTransport()
    url = f"{echo_url}/twirp/mcsv.v1.JobService/GetJob"
    for bad in ("x\r\nx-injected: yes", "x\ny", "x\0y"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await transport.send(_post(url, headers={"x-note": bad}))
    with pytest.raises(TransportError, match="not an http"):
        await transport.send(_post("ftp://127.0.0.1/x"))
    await transport.aclose()


def test_the_async_transport_runs_on_uvloop_as_the_services_do(echo_url: str) -> None:
    import uvloop

    async def calls() -> list[job_pb2.GetJobResponse]:
        transport = HttptoolsTransport()
        async with AsyncJobServiceClient(echo_url, transport=transport) as client:
            answers = [await client.get_job(EMPTY) for _ in range(3)]
        await transport.aclose()
        return answers

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(asyncio.wait_for(calls(), 10)) == [job_pb2.GetJobResponse()] * 3

"""The measurements behind the transport choices (README, "Why uvicorn serves the services",
"Why the generated clients use http.client and httptools"); not a goal of `just bench`:

    python -m tests.bench.transports servers [--seconds 6 --rounds 3]
    python -m tests.bench.transports clients [--seconds 4 --rounds 2]

servers: the service stack of tests/bench/rpc.py (service_app with observability and auth)
served by hypercorn, uvicorn (httptools; asyncio or uvloop) and granian in turn, loaded by
aiohttp at concurrency 10 with GetJob; prints requests/s and the server process's CPU per
request (from /proc), which on a shared machine says more than requests/s.
clients: the generated JobService clients on each transport against uvicorn serving that
stack, in calls/s (sync sequential, async at concurrency 10).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.rpc import CALLER, REQUEST, SECRETS, _async_rate, _sync_rate, _wait_listening
from tests.support.servers import ROOT, free_port, stop_process

SERVERS = ("hypercorn", "uvicorn", "uvicorn-uvloop", "granian")
GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"


def serve(kind: str, port: int) -> None:
    """Serves the bench's service stack with the server `kind`."""
    from tests.bench.rpc import ours_app

    app = ours_app()
    if kind == "hypercorn":  # as internal.services.common.app.run configured it before
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")

        async def main() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await hypercorn_serve(app, config, shutdown_trigger=stop.wait)

        asyncio.run(main())
    elif kind.startswith("uvicorn"):
        import uvicorn

        loop = "uvloop" if kind == "uvicorn-uvloop" else "asyncio"
        uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop=loop,
                    log_config=None, access_log=False)  # fmt: skip
    elif kind == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI,
                        log_access=False)  # fmt: skip
        asyncio.run(server.serve())
    else:
        raise SystemExit(f"unknown server {kind}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, seconds: float, pid: int) -> tuple[float, float]:
    """(requests/s, server CPU ms per request) of aiohttp at concurrency 10."""
    import aiohttp

    from internal import config
    from internal.auth.credentials import ServiceTokens

    tokens = ServiceTokens(config.load(), CALLER)
    body = REQUEST.SerializeToString()

    async def main() -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                headers = {"Content-Type": "application/protobuf",
                           "Authorization": f"Bearer {tokens.token('job_svc')}"}  # fmt: skip
                async with session.post(url + GET_JOB, data=body, headers=headers) as answer:
                    assert answer.status == 200, answer.status
                    await answer.read()

            await asyncio.gather(*(one() for _ in range(50)))
            cpu = _cpu_seconds(pid)
            rate = await _async_rate(one, seconds)
            used = _cpu_seconds(pid) - cpu
            return rate, 1000 * used / (rate * seconds)

    return asyncio.run(main())


DATA = Path(tempfile.gettempdir()) / "mcsv-bench-transports"


def _env() -> dict[str, str]:
    return {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "MCSV_LOG_FORMAT": "json",
            "MCSV_DATA_DIR": str(DATA)}  # fmt: skip


def _start(kind: str, port: int) -> subprocess.Popen[bytes]:
    DATA.mkdir(exist_ok=True)
    errors = DATA / f"{kind}.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.transports", "serve", kind, str(port)],
            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    _wait_listening(port, process, errors)
    return process


def compare_servers(seconds: float, rounds: int) -> None:
    for _ in range(rounds):
        for kind in SERVERS:
            port = free_port()
            process = _start(kind, port)
            try:
                rate, cpu_ms = load(f"http://127.0.0.1:{port}", seconds, process.pid)
                print(f"{kind:15s} {rate:7.0f} req/s   server CPU {cpu_ms:.3f} ms/req "
                      f"= {1000 / cpu_ms:6.0f} req/s per core", flush=True)  # fmt: skip
            finally:
                stop_process(process, timeout=15)


def compare_clients(seconds: float, rounds: int) -> None:
    import httpx
    from mcsv.twirp import (
        AiohttpTransport,
        HttpClientTransport,
        HTTPRequest,
        HTTPResponse,
        HttptoolsSyncTransport,
        HttptoolsTransport,
        Urllib3Transport,
    )
    from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient

    from internal import config
    from internal.auth.credentials import ServiceTokens

    class HttpxSync:
        def __init__(self) -> None:
            self.http = httpx.Client()

        def send(self, request: HTTPRequest) -> HTTPResponse:
            answer = self.http.post(request.url, content=request.body, headers=request.headers)
            return HTTPResponse(answer.status_code, answer.headers, answer.content)

        def close(self) -> None:
            self.http.close()

    class HttpxAsync:
        def __init__(self) -> None:
            self.http = httpx.AsyncClient()

        async def send(self, request: HTTPRequest) -> HTTPResponse:
            answer = await self.http.post(
                request.url, content=request.body, headers=request.headers
            )
            return HTTPResponse(answer.status_code, answer.headers, answer.content)

        async def aclose(self) -> None:
            await self.http.aclose()

    tokens = ServiceTokens(config.load(), CALLER)

    def credentials() -> str:
        return tokens.token("job_svc")

    port = free_port()
    process = _start("uvicorn-uvloop", port)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(rounds):
            sync_transports: dict[str, Any] = {
                "httptools": HttptoolsSyncTransport, "http.client": HttpClientTransport,
                "urllib3": Urllib3Transport, "httpx": HttpxSync,
            }  # fmt: skip
            for name, make in sync_transports.items():
                transport = make()
                with JobServiceClient(url, transport=transport, credentials=credentials) as c:
                    cpu = time.process_time()
                    rate = _sync_rate(lambda: c.get_job(REQUEST), seconds)
                    cpu_us = (time.process_time() - cpu) / (rate * seconds) * 1e6
                transport.close()
                print(f"sync  {name:11s} {rate:7.0f} calls/s  client CPU {cpu_us:4.0f} us/call",
                      flush=True)  # fmt: skip
            async_transports: dict[str, Any] = {
                "aiohttp": AiohttpTransport, "httptools": HttptoolsTransport, "httpx": HttpxAsync
            }  # fmt: skip
            for name, make in async_transports.items():

                async def measure(make: Any = make) -> float:
                    transport = make()
                    client = AsyncJobServiceClient(
                        url, transport=transport, credentials=credentials
                    )
                    rate = await _async_rate(lambda: client.get_job(REQUEST), seconds)
                    await transport.aclose()
                    return rate

                cpu = time.process_time()
                rate = asyncio.run(measure())
                cpu_us = (time.process_time() - cpu) / (rate * seconds) * 1e6
                print(f"async {name:11s} {rate:7.0f} calls/s  client CPU {cpu_us:4.0f} us/call "
                      "(c=10)", flush=True)  # fmt: skip
    finally:
        stop_process(process, timeout=15)


def main() -> None:
    os.environ.update(_env())  # the clients here mint their tokens with the servers' secrets
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["servers", "clients"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    if args.what == "servers":
        compare_servers(args.seconds, args.rounds)
    else:
        compare_clients(args.seconds, args.rounds)
    print(f"# {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()

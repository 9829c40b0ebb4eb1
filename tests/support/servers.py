"""Starting real servers for tests: ASGI apps served by uvicorn, as the services are, on loopback
ports."""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from internal.services.common.app import KEEP_ALIVE_SECONDS

ROOT = Path(__file__).resolve().parents[2]


# Test servers listen below the kernel's ephemeral range (ip_local_port_range, 32768 and up
# by default), which outgoing connections draw their local ports from: a port picked there
# can be taken by some client's connection before the server binds it.
TEST_PORTS = range(20_000, 32_000)


# Ports are handed out in turn from a random place in TEST_PORTS, so that one test run never
# hands out the same port twice: a port picked at random each time could go to two services
# of one system, and the second would fail to bind while the first answered its probes.
_cursor = itertools.count(random.randrange(len(TEST_PORTS)))


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range, and not handed out
    before by this process."""
    while True:
        port = TEST_PORTS[next(_cursor) % len(TEST_PORTS)]
        if _bindable(port):
            return port


def free_ports_in_a_row(count: int = 8) -> int:
    """The first of `count` consecutive free loopback ports: the supervisor gives job worker N
    the metrics port + N - 1, so every one of them must be free, not only the first."""
    while True:
        ports = [TEST_PORTS[next(_cursor) % len(TEST_PORTS)] for _ in range(count)]
        consecutive = ports == list(range(ports[0], ports[0] + count))
        if consecutive and all(_bindable(port) for port in ports):
            return ports[0]


@contextmanager
def serving(
    name: str,
    argv: list[str],
    probe: str,
    *,
    env: dict[str, str] | None = None,
    ready: Callable[[httpx.Response], bool] = lambda _: True,
    timeout: float = 30,
) -> Iterator[None]:
    """Runs a server process until the block ends, entering it once GET `probe` gets an
    answer that `ready` accepts. Its output goes to .pytest_cache/<name>.log, shown if it
    dies or does not answer in time."""
    log = ROOT / ".pytest_cache" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
            try:
                if ready(httpx.get(probe, timeout=1)):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within {timeout}s:\n{log.read_text()}")
            time.sleep(0.05)
        yield
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds; waits for it."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def uvicorn_argv(app: str, port: int) -> list[str]:
    """The command serving the ASGI app `module:attribute` on 127.0.0.1:`port` with uvicorn,
    configured as the services' run() configures it."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--http", "httptools", "--loop", "uvloop", "--ws", "none", "--no-access-log",
            "--no-proxy-headers", "--no-server-header",
            "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)]  # fmt: skip


@contextmanager
def asgi_server(app: str, env: dict[str, str] | None = None, timeout: float = 30) -> Iterator[str]:
    """Serves the ASGI app `module:attribute` with uvicorn (as internal.services.common.app
    runs the services) on a free loopback port until the block ends; yields its base URL once
    GET /health answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        f"uvicorn-{port}",
        uvicorn_argv(app, port),
        url + "/health",
        env={"PYTHONPATH": str(ROOT), **(env or {})},
        ready=lambda answer: answer.status_code == 200,
        timeout=timeout,
    ):
        yield url


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server (`python -m moto.server`) on a loopback port; yields its
    endpoint, host:port."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serving(f"moto-{port}", argv, f"http://127.0.0.1:{port}/"):
        yield f"127.0.0.1:{port}"

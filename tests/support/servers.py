"""Starting real servers for tests: hypercorn processes on loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def hypercorn(app: str, env: dict[str, str] | None = None, timeout: float = 30) -> Iterator[str]:
    """Serves the ASGI app `module:attribute` with hypercorn on a free loopback port until the
    block ends; yields its base URL once GET /health answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        f"hypercorn-{port}",
        [sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"],
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

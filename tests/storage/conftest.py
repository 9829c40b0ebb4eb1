from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from internal.storage import LocalStorage
from tests.support.servers import ROOT, free_port, hypercorn

MAX_PUT_BYTES = 64 * 1024
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key-do-not-leak"


@dataclass
class LocalServer:
    url: str
    # Signs URLs for the server: the same root and secret, with the server's URL as public URL.
    storage: LocalStorage


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """storage_routes served by hypercorn on a loopback port."""
    root = tmp_path_factory.mktemp("local-storage")
    secret = secrets.token_hex(32)
    env = {
        "MCSV_TEST_STORAGE_ROOT": str(root),
        "MCSV_TEST_STORAGE_SECRET": secret,
        "MCSV_TEST_STORAGE_MAX_PUT_BYTES": str(MAX_PUT_BYTES),
    }
    with hypercorn("tests.storage.app:app", env=env) as url:
        yield LocalServer(url, LocalStorage(root, public_url=url, secret=secret))


@dataclass
class MotoServer:
    endpoint: str  # host:port

    def storage_url(self, bucket: str) -> str:
        return (
            f"s3://{S3_ACCESS_KEY}:{S3_SECRET_KEY}@{self.endpoint}/{bucket}"
            "?secure=false&region=us-east-1"
        )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3-compatible server (`python -m moto.server`) on a loopback port."""
    port = free_port()
    log = ROOT / ".pytest_cache" / f"moto-{port}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answering(f"http://127.0.0.1:{port}/", process, log)
        yield MotoServer(f"127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto_server did not answer within 30s:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture
def bucket() -> str:
    """A bucket name no test has used."""
    return f"mcsv-test-{uuid.uuid4().hex[:16]}"

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from internal.storage import LocalStorage
from tests.support.servers import asgi_server, s3_server

MAX_PUT_BYTES = 64 * 1024
BODY_TIMEOUT_SECONDS = 1.0
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key-do-not-leak"


@dataclass
class LocalServer:
    url: str
    # Signs URLs for the server: the same root and secret, with the server's URL as public URL.
    storage: LocalStorage


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """storage_routes served by uvicorn on a loopback port."""
    root = tmp_path_factory.mktemp("local-storage")
    secret = secrets.token_hex(32)
    env = {
        "MCSV_TEST_STORAGE_ROOT": str(root),
        "MCSV_TEST_STORAGE_SECRET": secret,
        "MCSV_TEST_STORAGE_MAX_PUT_BYTES": str(MAX_PUT_BYTES),
        "MCSV_TEST_STORAGE_BODY_TIMEOUT": str(BODY_TIMEOUT_SECONDS),
    }
    with asgi_server("tests.storage.app:app", env=env) as url:
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
    with s3_server() as endpoint:
        yield MotoServer(endpoint)


@pytest.fixture
def bucket() -> str:
    """A bucket name no test has used."""
    return f"mcsv-test-{uuid.uuid4().hex[:16]}"

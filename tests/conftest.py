from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import asgi_server


@pytest.fixture(scope="session")
def echo_url() -> Iterator[str]:
    """Base URL of the five services served by the generated servers on TwirpApp."""
    with asgi_server("tests.support.echo_app:app") as url:
        yield url


@pytest.fixture(scope="session")
def stock_url() -> Iterator[str]:
    """Base URL of the same services on the unmodified `twirp` runtime."""
    with asgi_server("tests.support.echo_app:stock_app") as url:
        yield url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import s3_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) for the backend combinations that use S3."""
    with s3_server() as endpoint:
        yield endpoint

"""A Starlette app serving storage_routes for LocalStorage, configured by the test that starts it:
MCSV_TEST_STORAGE_ROOT, MCSV_TEST_STORAGE_SECRET, MCSV_TEST_STORAGE_MAX_PUT_BYTES and
MCSV_TEST_STORAGE_BODY_TIMEOUT.

The server only checks presigned URLs; the tests sign them with their own LocalStorage over the
same root and secret, once they know the port. So the public URL here is never used."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from internal.storage import LocalStorage, storage_routes


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


storage = LocalStorage(
    Path(os.environ["MCSV_TEST_STORAGE_ROOT"]),
    public_url="http://127.0.0.1",
    secret=os.environ["MCSV_TEST_STORAGE_SECRET"],
)
app = Starlette(
    routes=[
        Route("/health", health),
        *storage_routes(
            storage,
            int(os.environ["MCSV_TEST_STORAGE_MAX_PUT_BYTES"]),
            body_timeout=float(os.environ["MCSV_TEST_STORAGE_BODY_TIMEOUT"]),
        ),
    ]
)

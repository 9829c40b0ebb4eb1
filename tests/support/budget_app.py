"""A Twirp app for the body budget's tests: UserService.ConvertImage alone, answering with the
SHA-256 of the image it received (as the conversion's filename) after holding the request
for MCSV_TEST_HOLD_SECONDS, so that a test can keep the budget busy.

Settings (environment): MCSV_TEST_BODY_BUDGET_BYTES, MCSV_TEST_MAX_BODY_BYTES,
MCSV_TEST_BODY_READ_TIMEOUT (seconds), MCSV_TEST_HOLD_SECONDS."""

from __future__ import annotations

import asyncio
import hashlib
import os

from mcsv.twirp import Context, TwirpApp
from mcsv.twirp.server import Endpoint, ServiceServer
from mcsv.v1 import user_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

HOLD_SECONDS = float(os.environ.get("MCSV_TEST_HOLD_SECONDS", "0"))


async def convert_image(
    ctx: Context, request: user_pb2.ConvertImageRequest
) -> user_pb2.ConvertImageResponse:
    await asyncio.sleep(HOLD_SECONDS)
    digest = hashlib.sha256(request.image_data).hexdigest()
    return user_pb2.ConvertImageResponse(conversion=user_pb2.Conversion(filename=digest))


async def health(_: Request) -> Response:
    return PlainTextResponse("ok")


CONVERT_IMAGE = Endpoint(
    "ConvertImage", convert_image, user_pb2.ConvertImageRequest, user_pb2.ConvertImageResponse
)
twirp = TwirpApp(
    ServiceServer("mcsv.v1.UserService", [CONVERT_IMAGE]),
    max_body_bytes=int(os.environ["MCSV_TEST_MAX_BODY_BYTES"]),
    body_read_timeout=float(os.environ["MCSV_TEST_BODY_READ_TIMEOUT"]),
    body_budget_bytes=int(os.environ["MCSV_TEST_BODY_BUDGET_BYTES"]),
)
app = Starlette(routes=[Route("/health", health), Mount("/", app=twirp)])

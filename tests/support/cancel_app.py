"""A Twirp app for the cancellation test: UserService.GetUser alone, whose handler waits
MCSV_TEST_HOLD_SECONDS, then appends "finished <id>" to the file MCSV_TEST_MARKS; cancelled,
it appends "cancelled <id>" instead. So a test can tell whether a call whose client went
away ran on."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mcsv.twirp import Context, TwirpApp
from mcsv.twirp.server import Endpoint, ServiceServer
from mcsv.v1 import user_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

HOLD_SECONDS = float(os.environ.get("MCSV_TEST_HOLD_SECONDS", "0"))
MARKS = Path(os.environ.get("MCSV_TEST_MARKS", "/dev/null"))


def _mark(line: str) -> None:
    with MARKS.open("a") as marks:
        marks.write(line + "\n")


async def get_user(ctx: Context, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
    try:
        await asyncio.sleep(HOLD_SECONDS)
    except asyncio.CancelledError:
        _mark(f"cancelled {request.id}")
        raise
    _mark(f"finished {request.id}")
    return user_pb2.GetUserResponse(user=user_pb2.User(id=request.id))


async def health(_: Request) -> Response:
    return PlainTextResponse("ok")


GET_USER = Endpoint("GetUser", get_user, user_pb2.GetUserRequest, user_pb2.GetUserResponse)
twirp = TwirpApp(ServiceServer("mcsv.v1.UserService", [GET_USER]))
app = Starlette(routes=[Route("/health", health), Mount("/", app=twirp)])

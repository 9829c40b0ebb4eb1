"""A minimal UserService for running the README's curl examples: CreateUser answers with a
user made from the request; the rest is unimplemented. (The real user_svc replaces it once the
services exist.)"""

from __future__ import annotations

from typing import NoReturn

from mcsv.twirp import Context, ErrorCode, TwirpError
from mcsv.v1 import user_pb2, user_twirp
from mcsv.v1.user_twirp_server import UserServiceServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from internal.rpc import TwirpApp


def _unimplemented() -> NoReturn:
    raise TwirpError(ErrorCode.UNIMPLEMENTED, "not part of the README demo")


class ReadmeUsers:
    def create_user(
        self, ctx: Context, request: user_pb2.CreateUserRequest
    ) -> user_pb2.CreateUserResponse:
        if not request.email:
            raise TwirpError(ErrorCode.INVALID_ARGUMENT, "email is required", {"argument": "email"})
        user = user_pb2.User(id="u-1", name=request.name, email=request.email)
        return user_pb2.CreateUserResponse(user=user, job_id="j-1")

    def get_user(self, ctx: Context, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        _unimplemented()

    def convert_image(
        self, ctx: Context, request: user_pb2.ConvertImageRequest
    ) -> user_pb2.ConvertImageResponse:
        _unimplemented()

    def get_conversion(
        self, ctx: Context, request: user_pb2.GetConversionRequest
    ) -> user_pb2.GetConversionResponse:
        _unimplemented()

    def notify_email_delivered(
        self, ctx: Context, request: user_pb2.NotifyEmailDeliveredRequest
    ) -> user_pb2.NotifyEmailDeliveredResponse:
        _unimplemented()

    def conversion_complete(
        self, ctx: Context, request: user_pb2.ConversionCompleteRequest
    ) -> user_pb2.ConversionCompleteResponse:
        _unimplemented()


async def health(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


users: user_twirp.UserService = ReadmeUsers()
app = Starlette(
    routes=[Route("/health", health), Mount("/", app=TwirpApp(UserServiceServer(service=users)))]
)

"""A Twirp app serving all five mcsv services through the generated servers and the generated
runtime's TwirpApp, with implementations that check the exact request they receive.

Each RPC answers an empty request with an empty response and sample(Request) with
sample(Response); anything else is invalid_argument, with what arrived in meta. UserService
is implemented with plain methods (run in the runtime's thread pool), the others with async
methods. Headers drive the error paths:
  x-test-raise: <code>   the handler raises TwirpError(<code>) with non-string meta
  x-test-crash: 1        the handler raises an unexpected exception
  x-test-wrong-type: 1   the handler returns a message of the wrong type

Settings (environment): MCSV_TEST_MAX_BODY_BYTES, MCSV_TEST_BODY_READ_TIMEOUT (seconds).

`stock_app` serves the same implementations on the unmodified `twirp` PyPI runtime, to show
that the generated clients work against a Twirp server that is not ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from mcsv.twirp import ContextKey, ErrorCode, TwirpApp, TwirpError
from mcsv.twirp.server import ServiceServer
from mcsv.v1 import (
    client_pb2,
    client_twirp_server,
    email_pb2,
    email_twirp_server,
    image_pb2,
    image_twirp_server,
    job_pb2,
    job_twirp_server,
    user_pb2,
    user_twirp_server,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from twirp.asgi import TwirpASGIApp
from twirp.base import Endpoint as StockEndpoint
from twirp.server import TwirpServer

from internal.codegen.descriptors import snake_case
from tests.support.samples import sample

SERVICES = [
    (client_pb2, "ClientService", client_twirp_server.ClientServiceServer),
    (user_pb2, "UserService", user_twirp_server.UserServiceServer),
    (job_pb2, "JobService", job_twirp_server.JobServiceServer),
    (email_pb2, "EmailService", email_twirp_server.EmailServiceServer),
    (image_pb2, "ImageService", image_twirp_server.ImageServiceServer),
]
SYNC_SERVICES = {"UserService"}


def rpc_types(pb2: Any, service: str) -> dict[str, tuple[type[Message], type[Message]]]:
    """method name -> (request class, response class) for a service."""
    methods = pb2.DESCRIPTOR.services_by_name[service].methods
    return {
        m.name: (GetMessageClass(m.input_type), GetMessageClass(m.output_type)) for m in methods
    }


def answer(ctx: Any, request: Message, response_type: type[Message]) -> Message:
    headers = ctx.get(ContextKey.HEADERS) or {}  # the same key on both runtimes
    if code := headers.get("x-test-raise"):
        raise TwirpError(code, f"raised {code} on purpose", {"answer": 42, "code": code})
    if headers.get("x-test-crash"):
        raise RuntimeError("the handler crashed on purpose")
    if headers.get("x-test-wrong-type"):
        return user_pb2.User(id="not the declared response type")
    if request == type(request)():
        return response_type()
    if request == sample(type(request)):
        return sample(response_type)
    raise TwirpError(
        ErrorCode.INVALID_ARGUMENT,
        "the request is neither empty nor the sample",
        {"received": json_format.MessageToJson(request)},
    )


def implementation(service: str, types: dict[str, tuple[type[Message], type[Message]]]) -> Any:
    impl = type(f"Echo{service}", (), {})()
    for method, (_, response_type) in types.items():
        setattr(impl, snake_case(method), _handler(response_type, service in SYNC_SERVICES))
    return impl


def _handler(response_type: type[Message], sync: bool) -> Callable[..., Any]:
    if sync:
        return lambda ctx, request: answer(ctx, request, response_type)

    async def handle(ctx: Any, request: Message) -> Message:
        return answer(ctx, request, response_type)

    return handle


def servers() -> list[ServiceServer]:
    return [
        server_class(service=implementation(name, rpc_types(pb2, name)))
        for pb2, name, server_class in SERVICES
    ]


async def health(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


twirp_app = TwirpApp(
    *servers(),
    max_body_bytes=int(os.environ.get("MCSV_TEST_MAX_BODY_BYTES", 256 * 1024)),
    body_read_timeout=float(os.environ.get("MCSV_TEST_BODY_READ_TIMEOUT", 10)),
)
app = Starlette(routes=[Route("/health", health), Mount("/", app=twirp_app)])


class StockServer(TwirpServer):  # type: ignore[misc]  # the twirp package is untyped
    """One of our servers' services as a server of the `twirp` package, built as that
    package's own code generator builds them (a TwirpServer with its prefix and endpoints)."""

    def __init__(self, ours: ServiceServer) -> None:
        super().__init__(service=ours)
        self._prefix = ours.prefix
        self._endpoints = {
            name: StockEndpoint(
                service_name=ours.service_name,
                name=name,
                function=endpoint.function,
                input=endpoint.input,
                output=endpoint.output,
            )
            for name, endpoint in ours.endpoints.items()
        }


stock_twirp = TwirpASGIApp()
for _server in servers():
    stock_twirp.add_service(StockServer(_server))
stock_app = Starlette(routes=[Route("/health", health), Mount("/", app=stock_twirp)])

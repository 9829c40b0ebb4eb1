"""Every RPC of every mcsv service, with its generated client classes, for parametrized tests."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf.message import Message
from mcsv.v1 import (
    client_pb2,
    client_twirp,
    email_pb2,
    email_twirp,
    image_pb2,
    image_twirp,
    job_pb2,
    job_twirp,
    user_pb2,
    user_twirp,
)

from internal.codegen.descriptors import snake_case
from tests.support.echo_app import rpc_types


@dataclass(frozen=True)
class Rpc:
    service: str
    method: str
    request_type: type[Message]
    response_type: type[Message]
    client_module: ModuleType

    @property
    def path(self) -> str:
        return f"/twirp/mcsv.v1.{self.service}/{self.method}"

    def client_class(self, asynchronous: bool) -> Any:
        prefix = "Async" if asynchronous else ""
        return getattr(self.client_module, f"{prefix}{self.service}Client")

    @property
    def python_name(self) -> str:
        return snake_case(self.method)

    def __str__(self) -> str:
        return f"{self.service}.{self.method}"


_MODULES = [
    (client_pb2, client_twirp, "ClientService"),
    (user_pb2, user_twirp, "UserService"),
    (job_pb2, job_twirp, "JobService"),
    (email_pb2, email_twirp, "EmailService"),
    (image_pb2, image_twirp, "ImageService"),
]

RPCS = [
    Rpc(service, method, request_type, response_type, twirp_module)
    for pb2, twirp_module, service in _MODULES
    for method, (request_type, response_type) in rpc_types(pb2, service).items()
]

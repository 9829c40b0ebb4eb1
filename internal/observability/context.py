"""What a log line or a span should know about the work in hand: the service, the request,
the RPC and the workflow's ids. Kept in context variables, so that they follow a request
through awaits and into the thread pool."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager


class _ProcessWide:
    """A value for the whole process and all its threads. (A ContextVar would not do for the
    service name: a new thread, such as a Dramatiq worker thread, starts without it.)"""

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def set(self, value: str) -> None:
        self._value = value


SERVICE = _ProcessWide("mcsv")
REQUEST_ID = contextvars.ContextVar("request_id", default="")
RPC_SERVICE = contextvars.ContextVar("rpc_service", default="")
RPC_METHOD = contextvars.ContextVar("rpc_method", default="")
# Set by handlers when they know them; "" when not.
WORKFLOW_IDS: dict[str, contextvars.ContextVar[str]] = {
    name: contextvars.ContextVar(name, default="")
    for name in ("user_id", "conversion_id", "job_id", "email_id")
}
REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    """16 random hex digits (os.urandom: a fifth of uuid4's cost, and as random)."""
    return os.urandom(8).hex()


def tag(**ids: str) -> None:
    """Records workflow ids (user_id, conversion_id, job_id, email_id) for this request's logs
    and spans."""
    for name, value in ids.items():
        WORKFLOW_IDS[name].set(value)


def tags() -> dict[str, str]:
    return {name: value for name, var in WORKFLOW_IDS.items() if (value := var.get())}


@contextmanager
def scoped(**values: str) -> Iterator[None]:
    """Sets request_id/rpc_service/rpc_method/workflow ids for the block, restoring after."""
    variables = {
        "request_id": REQUEST_ID, "rpc_service": RPC_SERVICE, "rpc_method": RPC_METHOD,
        **WORKFLOW_IDS,
    }  # fmt: skip
    tokens = [(variables[k], variables[k].set(v)) for k, v in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)

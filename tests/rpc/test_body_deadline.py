"""The generated server's deadline for a request body, seen from the ASGI side: a body that
stalls is answered deadline_exceeded once the deadline passes, and a cancellation that comes
from elsewhere while the body is awaited (the server stopping, the client's task cancelled)
stays a cancellation, answered nothing. (Over real sockets: tests/rpc/test_bad_input.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from mcsv.twirp import TwirpApp

from tests.support.echo_app import servers

GET_JOB = "/twirp/mcsv.v1.JobService/GetJob"

pytestmark = pytest.mark.anyio


def _scope() -> dict[str, Any]:
    headers = [(b"content-type", b"application/protobuf"), (b"content-length", b"3")]
    return {"type": "http", "method": "POST", "path": GET_JOB, "headers": headers}


async def _stalled_receive() -> dict[str, Any]:
    await asyncio.Event().wait()  # the body never comes
    raise AssertionError("unreachable")


async def test_a_stalled_body_is_answered_deadline_exceeded_after_the_deadline() -> None:
    app = TwirpApp(*servers(), body_read_timeout=0.2)
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    started = asyncio.get_running_loop().time()
    await app(_scope(), _stalled_receive, send)
    waited = asyncio.get_running_loop().time() - started

    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["code"] == "deadline_exceeded"
    assert 0.15 < waited < 5
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the deadline's cancel was withdrawn


async def test_a_cancellation_from_elsewhere_during_the_body_stays_a_cancellation() -> None:
    app = TwirpApp(*servers(), body_read_timeout=30)
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.create_task(app(_scope(), _stalled_receive, send))
    await asyncio.sleep(0.05)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert sent == []  # no deadline_exceeded for a request the server gave up on


async def test_a_cancellation_at_the_deadline_itself_is_not_swallowed() -> None:
    """Both at once: the deadline passes and the task is cancelled from elsewhere before it
    runs again. The other cancellation wins, as with asyncio.timeout."""
    app = TwirpApp(*servers(), body_read_timeout=0.1)
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.create_task(app(_scope(), _stalled_receive, send))
    loop = asyncio.get_running_loop()

    def hold_the_loop_past_the_deadline_then_cancel() -> None:
        time.sleep(0.15)  # the deadline's timer is due when the loop next looks
        loop.call_soon(serving.cancel)

    loop.call_later(0.02, hold_the_loop_past_the_deadline_then_cancel)
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert sent == []

"""The generated server's deadline for a request body, seen from the ASGI side: a body that
stalls or trickles is answered deadline_exceeded once the deadline passes; one that keeps
coming at the minimum rate is read however long it takes, as is one whose sender falls
silent after a large first part (a client busy with its other uploads) for no longer than
that part earned; and a cancellation that comes from elsewhere while the body is awaited
(the server stopping, the client's task cancelled) stays a cancellation, answered nothing.
(Over real sockets: tests/rpc/test_bad_input.py.)"""

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


def _scope(length: int = 3) -> dict[str, Any]:
    headers = [(b"content-type", b"application/protobuf"), (b"content-length", b"%d" % length)]
    return {"type": "http", "method": "POST", "path": GET_JOB, "headers": headers}


def _body(size: int) -> bytes:
    """A GetJobRequest of exactly `size` bytes (its id: field 1, a string)."""
    payload = size - 3  # after the tag and a two-byte length (sizes up to 16 KiB)
    assert 128 <= payload < 16384
    return b"\x0a" + bytes([payload & 0x7F | 0x80, payload >> 7]) + b"x" * payload


def _arriving(body: bytes, schedule: list[tuple[float, int]]) -> Any:
    """A receive callable that delivers `body` as the schedule says: (pause in seconds before
    the piece, its size in bytes), the last piece ending the body."""
    pieces = iter(schedule)
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        pause, size = next(pieces)
        await asyncio.sleep(pause)
        piece = body[sent : sent + size]
        sent += len(piece)
        return {"type": "http.request", "body": piece, "more_body": sent < len(body)}

    return receive


async def _serve(app: TwirpApp, length: int, receive: Any) -> tuple[int, dict[str, Any], float]:
    """(status, the error's JSON, seconds taken) of one request through the app."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    started = asyncio.get_running_loop().time()
    await app(_scope(length), receive, send)
    took = asyncio.get_running_loop().time() - started
    return sent[0]["status"], json.loads(sent[1]["body"] or b"{}"), took


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


async def test_a_body_that_keeps_coming_at_the_minimum_rate_is_read_past_the_timeout() -> None:
    # 0.2 s, and one more second per 1,000 bytes: ten pieces of 200 bytes, 0.1 s apart.
    app = TwirpApp(*servers(), body_read_timeout=0.2, body_min_rate=1000)
    body = _body(2000)
    status, error, took = await _serve(app, len(body), _arriving(body, [(0.1, 200)] * 10))
    assert took > 0.9  # well past body_read_timeout
    assert (status, error["code"]) == (400, "invalid_argument")  # read, decoded and answered
    assert "neither empty nor the sample" in error["msg"]


async def test_a_sender_silent_for_no_longer_than_its_first_part_earned_is_read() -> None:
    """What a client with many large uploads on one event loop does: the kernel's buffers
    hold a first part that arrives at once, then the sender comes back to the rest late."""
    app = TwirpApp(*servers(), body_read_timeout=0.2, body_min_rate=1000)
    body = _body(1000)  # the first 500 bytes earn 0.5 s more
    status, error, took = await _serve(app, len(body), _arriving(body, [(0, 500), (0.5, 500)]))
    assert took > 0.45
    assert (status, error["code"]) == (400, "invalid_argument")


async def test_a_body_trickling_below_the_minimum_rate_is_cut_off() -> None:
    app = TwirpApp(*servers(), body_read_timeout=0.2, body_min_rate=100_000)
    body = _body(2000)
    status, error, took = await _serve(app, len(body), _arriving(body, [(0.05, 20)] * 100))
    assert status == 408
    assert error["code"] == "deadline_exceeded"
    assert error["meta"] == {"body_read_timeout": "0.2s", "body_min_rate": "100000"}
    assert "of 2000 bytes came in" in error["msg"]
    assert 0.15 < took < 1.0  # the 0.2 s and the little its few bytes earned


async def test_without_a_minimum_rate_the_timeout_is_for_the_whole_body() -> None:
    app = TwirpApp(*servers(), body_read_timeout=0.3, body_min_rate=None)
    body = _body(1000)
    status, error, _ = await _serve(app, len(body), _arriving(body, [(0.1, 100)] * 10))
    assert status == 408
    assert error["meta"] == {"body_read_timeout": "0.3s"}

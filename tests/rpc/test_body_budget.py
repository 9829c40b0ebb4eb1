"""The body budget (mcsv.twirp's BodyBudget, TwirpApp body_budget_bytes): large request bodies
wait for their share of the budget before they are read, without losing a byte, without the
wait counting against the body read timeout, and without delaying the typed refusal of a body
over the limit. Served by uvicorn, as the services are, and by hypercorn."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Iterator

import httpx
import pytest
from mcsv.twirp import ErrorCode
from mcsv.twirp.budget import BodyBudget
from mcsv.v1 import user_pb2

from tests.support.servers import free_port, serving, uvicorn_argv

CONVERT = "/twirp/mcsv.v1.UserService/ConvertImage"
PROTOBUF = {"Content-Type": "application/protobuf"}
BUDGET = 1024 * 1024
MAX_BODY = 2 * 1024 * 1024
BODY_READ_TIMEOUT = 1.0
HOLD = 0.4  # seconds each request holds its share after its body arrived


APP = "tests.support.budget_app:app"


def server_argv(kind: str, port: int) -> list[str]:
    """The services' server (uvicorn with httptools: it pauses reading a connection whose app
    does not call receive), or hypercorn (whose bounded queue to the app fills, then it stops
    reading)."""
    if kind == "uvicorn":
        return uvicorn_argv(APP, port)
    return [sys.executable, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}"]


@pytest.fixture(scope="module", params=["hypercorn", "uvicorn"])
def budget_url(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "MCSV_TEST_BODY_BUDGET_BYTES": str(BUDGET),
        "MCSV_TEST_MAX_BODY_BYTES": str(MAX_BODY),
        "MCSV_TEST_BODY_READ_TIMEOUT": str(BODY_READ_TIMEOUT),
        "MCSV_TEST_HOLD_SECONDS": str(HOLD),
    }
    argv = server_argv(request.param, port)
    with serving(f"budget-{request.param}-{port}", argv, url + "/health", env=env):
        yield url


def upload(image: bytes) -> bytes:
    return user_pb2.ConvertImageRequest(user_id="u", filename="f.png",
                                        image_data=image).SerializeToString()  # fmt: skip


async def post_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await asyncio.gather(
            *(http.post(CONVERT, headers=PROTOBUF, content=body) for body in bodies)
        )


def test_many_concurrent_large_uploads_all_arrive_intact(budget_url: str) -> None:
    """Twelve uploads of 0.9 MB against a 1 MB budget: one at a time, each held 0.4 s, so
    that the last waits about 4 s, four times the body read timeout."""
    images = [os.urandom(900 * 1024) for _ in range(12)]
    answers = asyncio.run(post_all(budget_url, [upload(image) for image in images]))
    for image, answer in zip(images, answers, strict=True):
        assert answer.status_code == 200, answer.text
        received = user_pb2.ConvertImageResponse.FromString(answer.content)
        assert received.conversion.filename == hashlib.sha256(image).hexdigest()


def test_a_body_over_the_limit_is_refused_at_once_while_others_wait(budget_url: str) -> None:
    """A Content-Length over max_body_bytes (declared, the body never sent) gets its typed
    error without waiting for the budget, which three uploads hold meanwhile."""

    async def scenario() -> tuple[bytes, bool]:
        async with httpx.AsyncClient(base_url=budget_url, timeout=60) as http:
            waiting = [
                asyncio.create_task(
                    http.post(CONVERT, headers=PROTOBUF, content=upload(os.urandom(900 * 1024)))
                )
                for _ in range(3)
            ]
            await asyncio.sleep(0.1)  # the first holds the budget, the others wait
            host, port = budget_url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"POST {CONVERT} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/protobuf\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
                .encode()
            )  # fmt: skip
            refused = await asyncio.wait_for(reader.read(), 30)  # until the server closes
            writer.close()
            all_done_before = all(task.done() for task in waiting)
            answers = await asyncio.gather(*waiting)
            assert all(answer.status_code == 200 for answer in answers)
            return refused, all_done_before

    refused, all_done_before = asyncio.run(scenario())
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), refused[:200]
    error = json.loads(body)
    assert error["code"] == ErrorCode.INVALID_ARGUMENT.value
    assert error["meta"] == {"max_body_bytes": str(MAX_BODY)}
    assert not all_done_before


def test_a_small_body_does_not_wait_behind_large_ones(budget_url: str) -> None:
    async def scenario() -> bool:
        async with httpx.AsyncClient(base_url=budget_url, timeout=60) as http:
            large = [
                asyncio.create_task(
                    http.post(CONVERT, headers=PROTOBUF, content=upload(os.urandom(900 * 1024)))
                )
                for _ in range(3)
            ]
            await asyncio.sleep(0.1)
            small = await http.post(CONVERT, headers=PROTOBUF, content=upload(b"tiny"))
            assert small.status_code == 200
            passed = not all(task.done() for task in large)
            await asyncio.gather(*large)
            return passed

    assert asyncio.run(scenario())


# The budget itself


def test_reservations_wait_their_turn_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        budget = BodyBudget(300_000)
        order: list[str] = []

        async def take(name: str, size: int, hold: float) -> None:
            async with budget.reserve(size):
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(take("first", 200_000, 0.05))
        await asyncio.sleep(0)
        # The second does not fit yet; the third would, but comes after it.
        second = asyncio.create_task(take("second", 200_000, 0))
        third = asyncio.create_task(take("third", 100_000, 0))
        await asyncio.gather(first, second, third)
        assert budget.in_use == 0
        return order

    assert asyncio.run(scenario()) == ["first", "second", "third"]


def test_a_body_larger_than_the_budget_waits_for_all_of_it() -> None:
    async def scenario() -> None:
        budget = BodyBudget(200_000)
        async with budget.reserve(150_000):
            big = asyncio.create_task(_hold(budget, 1_000_000))
            await asyncio.sleep(0.01)
            assert not big.done() and budget.waiting == 1
        await big
        assert budget.in_use == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> None:
        budget = BodyBudget(300_000)
        async with budget.reserve(150_000):
            gone = asyncio.create_task(_hold(budget, 200_000))
            after = asyncio.create_task(_hold(budget, 100_000))
            await asyncio.sleep(0.01)
            assert not after.done()  # it would fit, but waits behind `gone`
            await asyncio.sleep(0.01)
            gone.cancel()  # the client went away while waiting
            await asyncio.sleep(0.01)
            assert after.done()  # it fits beside the first and no longer waits behind `gone`
        assert budget.in_use == 0 and budget.waiting == 0

    asyncio.run(scenario())


async def _hold(budget: BodyBudget, size: int) -> None:
    async with budget.reserve(size):
        pass

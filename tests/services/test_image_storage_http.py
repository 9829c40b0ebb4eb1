"""image_svc's client for presigned storage URLs (storage_http.StorageHttp) against a small
aiohttp server in this process: a URL goes out byte for byte as signed, with the trace
context; redirects are not followed; an object over the limit, a refusal and an unreachable
storage each raise their own error, which image_svc turns into its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from internal.services.image_svc.storage_http import (
    StorageHttp,
    StorageRefused,
    StorageUnavailable,
    TooLarge,
)
from tests.support.servers import free_port

T = TypeVar("T")
BODY = bytes(range(256)) * 400  # 100 KB
# What a presigned URL's query may hold: escapes that re-quoting would change.
SIGNED = "/storage/uploads/a%20b/x.png?expires=1&sig=ab%2Fcd%2B%3D&ct=image%2Fpng"


async def _serve(test: Callable[[str, list[web.Request]], Awaitable[T]]) -> T:
    """Runs `test` with the base URL of a server that records the requests it gets."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if request.path == "/redirect":
            raise web.HTTPFound("/storage/elsewhere")
        if request.path == "/forbidden":
            return web.Response(status=403, text="signature does not match")
        if request.path == "/chunked":  # no Content-Length: the size shows while streaming
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(4):
                await response.write(BODY)
            await response.write_eof()
            return response
        if request.method == "PUT":
            await request.read()
            return web.Response(status=409 if request.path == "/exists" else 200)
        return web.Response(body=BODY, content_type="image/png")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await test(f"http://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def run(test: Callable[[str, list[web.Request], StorageHttp], Awaitable[T]]) -> T:
    async def with_client(base: str, seen: list[web.Request]) -> T:
        http = StorageHttp(timeout=5)
        try:
            return await test(base, seen, http)
        finally:
            await http.aclose()

    return asyncio.run(_serve(with_client))


def test_a_signed_url_goes_out_as_signed_with_the_trace_context() -> None:
    async def test(base: str, seen: list[web.Request], http: StorageHttp) -> None:
        with TracerProvider().get_tracer("test").start_as_current_span("conversion") as span:
            assert await http.get(base + SIGNED, max_bytes=len(BODY)) == BODY
            assert (await http.put(base + SIGNED, b"%PDF-1.7", "application/pdf"))[0] == 200
        assert [request.raw_path for request in seen] == [SIGNED, SIGNED]
        assert seen[1].headers["Content-Type"] == "application/pdf"
        trace_id = f"{span.get_span_context().trace_id:032x}"
        assert all(r.headers["traceparent"].split("-")[1] == trace_id for r in seen)

    run(test)


def test_redirects_are_not_followed_and_refusals_say_their_status() -> None:
    async def test(base: str, seen: list[web.Request], http: StorageHttp) -> None:
        with pytest.raises(StorageRefused) as redirected:
            await http.get(base + "/redirect", max_bytes=len(BODY))
        assert redirected.value.status == 302 and len(seen) == 1
        with pytest.raises(StorageRefused) as refused:
            await http.get(base + "/forbidden", max_bytes=len(BODY))
        assert (refused.value.status, refused.value.body) == (403, "signature does not match")
        assert (await http.put(base + "/exists", b"%PDF-1.7", "application/pdf"))[0] == 409

    run(test)


def test_an_object_over_the_limit_is_refused_declared_or_streamed() -> None:
    async def test(base: str, seen: list[web.Request], http: StorageHttp) -> None:
        with pytest.raises(TooLarge) as declared:
            await http.get(base + SIGNED, max_bytes=len(BODY) - 1)
        assert declared.value.size == len(BODY)
        with pytest.raises(TooLarge) as streamed:
            await http.get(base + "/chunked", max_bytes=2 * len(BODY))
        assert streamed.value.size > 2 * len(BODY)
        assert await http.get(base + "/chunked", max_bytes=4 * len(BODY)) == BODY * 4

    run(test)


def test_an_unreachable_storage_is_unavailable() -> None:
    async def test() -> None:
        http = StorageHttp(timeout=5)
        try:
            with pytest.raises(StorageUnavailable):
                await http.get(f"http://127.0.0.1:{free_port()}/storage/x.png", max_bytes=10)
        finally:
            await http.aclose()

    asyncio.run(test())

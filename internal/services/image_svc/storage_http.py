"""image_svc's HTTP client for presigned storage URLs: fetching the image, storing the PDF.
It runs on aiohttp, as the generated clients' transports do: for a 100 KB GET and an 80 KB
PUT per conversion httpx took ~1.2 ms of CPU, aiohttp ~0.3 ms. Each request gets a client
span and carries the trace context (observability.HttpCall).

The URLs are sent byte for byte as signed (no re-quoting), redirects are not followed, and
each socket operation (connect, every read) may take up to `timeout` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from mcsv.twirp.transport import KEEPALIVE_SECONDS
from yarl import URL

from internal.observability import HttpCall

T = TypeVar("T")


class StorageUnavailable(Exception):
    """No answer from the storage: unreachable, timed out, or the connection broke."""


class InvalidStorageURL(ValueError):
    """A URL the client cannot send."""


class StorageRefused(Exception):
    """The storage answered a GET with a status other than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class TooLarge(Exception):
    """The object is larger than allowed (at least `size` bytes)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"at least {size} bytes")
        self.size = size


class StorageHttp:
    """The client; its session is made on the first request, in the loop it belongs to."""

    def __init__(self, timeout: float | None, pool_size: int = 100) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                # Idle connections retired before the server's keep-alive ends (as the
                # generated clients do), so that no request goes out on one being closed.
                connector=aiohttp.TCPConnector(
                    limit=self._pool_size, keepalive_timeout=KEEPALIVE_SECONDS
                ),
                timeout=self._timeout,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def get(self, url: str, max_bytes: int) -> bytes:
        """The object's bytes; TooLarge past `max_bytes`, StorageRefused unless 200."""

        async def body(response: aiohttp.ClientResponse) -> bytes:
            if response.status != 200:
                text = (await response.content.read(200)).decode(errors="replace")
                raise StorageRefused(response.status, text)
            declared = response.content_length or 0
            if declared > max_bytes:
                raise TooLarge(declared)
            chunks, size = [], 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(size)
                chunks.append(chunk)
            return b"".join(chunks)

        return await self._send("GET", url, {}, None, body)

    async def put(self, url: str, body: bytes, content_type: str) -> tuple[int, str]:
        """Stores `body`; the answer's status and the start of its text."""

        async def answer(response: aiohttp.ClientResponse) -> tuple[int, str]:
            return response.status, (await response.content.read(200)).decode(errors="replace")

        return await self._send("PUT", url, {"Content-Type": content_type}, body, answer)

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        """One request in its span; `read` makes the result of the answer."""
        call = HttpCall(method, url, headers)
        status: int | None = None
        try:
            async with self._open().request(
                method, _exact(url), data=data, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                result = await read(response)
        except (StorageRefused, TooLarge):
            call.finish(status, b"", None)
            raise
        except aiohttp.InvalidURL as exc:
            call.finish(None, b"", exc)
            raise InvalidStorageURL(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            call.finish(None, b"", exc)
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}".removesuffix(": ")) from exc
        except BaseException as exc:
            call.finish(status, b"", exc)
            raise
        call.finish(status, b"", None)
        return result

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _exact(url: str) -> URL:
    """The URL as given: a presigned URL's signature covers its exact bytes."""
    try:
        return URL(url, encoded=True)
    except (TypeError, ValueError) as exc:
        raise InvalidStorageURL(str(exc)) from exc

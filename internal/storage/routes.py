"""HTTP routes that serve LocalStorage's presigned URLs: GET streams an object out, PUT streams one
in, once: a PUT is refused when its object exists. Refusals are plain text: 400 bad key, 403
bad or expired URL, 404 no such object, 409 the object exists (a PUT URL used again), 413 too
large, 408 a PUT body that stalled or trickled: not all there `body_timeout` seconds after the
request, plus one second for every `body_min_rate` bytes received (the rule of the Twirp
servers' bodies, mcsv.twirp's TwirpApp: a body that keeps coming is read however large it is
and however slow the link, a slow drip cannot hold a connection and a temporary file
forever). A 413 or 408
leaves the rest of the body unread, so it closes the connection (Connection: close): a client
still sending learns at once that nothing more is read, and a stalled one cannot hold it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from internal.storage.base import ObjectExists, ObjectNotFound, StorageError, validate_key
from internal.storage.local import LocalStorage, StoredObject, Upload
from internal.storage.signing import URLRefused

CHUNK_BYTES = 256 * 1024

log = logging.getLogger(__name__)


def storage_routes(
    storage: LocalStorage,
    max_put_bytes: int,
    *,
    body_timeout: float = 10.0,
    body_min_rate: int | None = 16 * 1024,
) -> list[BaseRoute]:
    """Routes for GET and PUT /storage/{key}, to mount at the root of the app at
    `storage`'s public URL. A PUT whose body has not all come `body_timeout` seconds plus
    one per `body_min_rate` bytes received (None: no more) after it began is answered 408."""
    if max_put_bytes <= 0:
        raise StorageError(f"max_put_bytes must be positive, not {max_put_bytes}")
    if body_timeout <= 0:
        raise StorageError(f"body_timeout must be positive, not {body_timeout}")
    if body_min_rate is not None and body_min_rate <= 0:
        raise StorageError(f"body_min_rate must be positive, not {body_min_rate}")
    endpoint = _StorageEndpoint(storage, max_put_bytes, body_timeout, body_min_rate)
    return [Route("/storage/{key:path}", endpoint.handle, methods=["GET", "HEAD", "PUT"])]


class _StorageEndpoint:
    def __init__(
        self,
        storage: LocalStorage,
        max_put_bytes: int,
        body_timeout: float,
        body_min_rate: int | None,
    ) -> None:
        self._storage = storage
        self._max_put_bytes = max_put_bytes
        self._body_timeout = body_timeout
        self._body_min_rate = body_min_rate

    async def handle(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            validate_key(key)
        except StorageError as error:
            return _refuse(400, str(error))
        method = "PUT" if request.method == "PUT" else "GET"
        content_type = request.headers.get("content-type", "")
        try:
            self._storage.check_url(method, key, request.query_params, content_type)
        except URLRefused as error:
            return _refuse(403, str(error))
        if method == "PUT":
            # A URL used again is refused before its body is read, unless the body is small:
            # then its commit refuses it (409 too), in the thread hop that writes it.
            declared = _declared_length(request)
            small = declared is not None and declared <= CHUNK_BYTES
            if not small and await anyio.to_thread.run_sync(self._storage.exists, key):
                return _refuse(409, "the object exists: a presigned PUT URL is used once")
            return await self._receive(request, key, content_type)
        return await self._send(request, key)

    async def _send(self, request: Request, key: str) -> Response:
        try:
            stored, body = await anyio.to_thread.run_sync(self._open, key, request.method == "GET")
        except ObjectNotFound:
            return _refuse(404, "no such object")
        headers = {
            "Content-Length": str(stored.size),
            # Set directly rather than as media_type, which would append a charset to text/*.
            "Content-Type": stored.content_type,
            "X-Content-Type-Options": "nosniff",
        }
        if request.method == "HEAD":
            return Response(headers=headers)
        if body is not None:
            return Response(body, headers=headers)
        return StreamingResponse(_chunks(stored), headers=headers)

    def _open(self, key: str, read: bool) -> tuple[StoredObject, bytes | None]:
        """The object, and its bytes when `read` and it fits in one chunk (then, or without
        `read`, it is closed already): a small object goes out in one piece, its read in the
        same thread hop as its opening (a hop costs more CPU than reading 100 KB)."""
        stored = self._storage.open(key)
        if read and stored.size > CHUNK_BYTES:
            return stored, None  # streamed out, chunk by chunk
        with stored:
            return stored, stored.file.read() if read else None

    async def _receive(self, request: Request, key: str, content_type: str) -> Response:
        too_large = _refuse(413, f"object larger than {self._max_put_bytes} bytes", close=True)
        declared = _declared_length(request)
        if declared is not None and declared > self._max_put_bytes:
            return too_large
        try:
            # The body is gathered in memory up to CHUNK_BYTES, so that a small object is
            # written and committed in one thread hop; a larger one goes on to a temporary file
            # a chunk at a time.
            pending: list[bytes] = []
            pending_bytes, total = 0, 0
            upload: Upload | None = None
            try:
                chunks = request.stream()
                started = anyio.current_time()
                while (chunk := await self._next_chunk(chunks, started, total)) is not None:
                    total += len(chunk)
                    if total > self._max_put_bytes:
                        return too_large
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= CHUNK_BYTES:
                        upload = await anyio.to_thread.run_sync(self._write, upload, pending)
                        pending, pending_bytes = [], 0
                await anyio.to_thread.run_sync(self._commit, upload, pending, key, content_type)
            finally:
                if upload is not None:
                    await anyio.to_thread.run_sync(upload.discard)
        except ObjectExists:  # another PUT of the same URL finished first
            return _refuse(409, "the object exists: a presigned PUT URL is used once")
        except TimeoutError:
            allowed = f"{self._body_timeout:g} s" + (
                f" and one more per {self._body_min_rate} bytes received"
                if self._body_min_rate
                else ""
            )
            return _refuse(408, f"the request body did not arrive in time ({allowed})", close=True)
        except ClientDisconnect:
            return _refuse(400, "upload interrupted")
        except StorageError:
            log.exception("storing %s failed", key)
            return _refuse(500, "could not store the object")
        return Response(status_code=200)

    def _write(self, upload: Upload | None, pieces: list[bytes]) -> Upload:
        """Appends the pieces to the upload, started here if None (and then thrown away
        should a write fail)."""
        started = upload is None
        upload = upload or self._storage.new_upload()
        try:
            for piece in pieces:
                upload.write(piece)
        except BaseException:
            if started:
                upload.discard()
            raise
        return upload

    def _commit(
        self, upload: Upload | None, pieces: list[bytes], key: str, content_type: str
    ) -> None:
        """Appends the last pieces and makes the upload the object `key` (ObjectExists if
        there is one). The upload's temporary file is gone afterwards, whatever happened."""
        self._write(upload, pieces).commit(key, content_type, exclusive=True)

    async def _next_chunk(
        self, chunks: AsyncIterator[bytes], started: float, received: int
    ) -> bytes | None:
        """The next piece of the body, None at its end; TimeoutError once the body is past
        its deadline: body_timeout after `started`, and the time `received` bytes earned."""
        deadline = started + self._body_timeout
        if self._body_min_rate:
            deadline += received / self._body_min_rate
        with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
            return await anext(chunks, None)


def _declared_length(request: Request) -> int | None:
    """The body's length as the request declares it (Content-Length), None if it does not."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def _chunks(stored: StoredObject) -> AsyncIterator[bytes]:
    file: BinaryIO = stored.file
    try:
        while chunk := await anyio.to_thread.run_sync(file.read, CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


def _refuse(status: int, reason: str, *, close: bool = False) -> Response:
    """A plain-text refusal; `close` ends the connection after it (the body was not read)."""
    if close:
        return _ClosingRefusal(reason + "\n", status_code=status, headers={"Connection": "close"})
    return PlainTextResponse(reason + "\n", status_code=status)


class _ClosingRefusal(PlainTextResponse):
    """A refusal sent while the client may still be sending the body, which is then closed.
    Some ASGI servers (hypercorn) deliver the body and, after the answer, the disconnect
    through the same bounded queue: once the unread body has filled it, sending the answer
    would wait for room forever and the connection would never close. So the rest of the body
    is read and dropped while the answer goes out (uvicorn, which serves the services, ends
    the loop at once: its receive() answers http.disconnect once the response is complete)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def drop_the_body() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async with anyio.create_task_group() as group:
            group.start_soon(drop_the_body)
            await super().__call__(scope, receive, send)
            group.cancel_scope.cancel()

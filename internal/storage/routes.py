"""HTTP routes that serve LocalStorage's presigned URLs: GET streams an object out, PUT streams one
in, once: a PUT is refused when its object exists. Refusals are plain text: 400 bad key, 403
bad or expired URL, 404 no such object, 409 the object exists (a PUT URL used again), 413 too
large."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from internal.storage.base import ObjectExists, ObjectNotFound, StorageError, validate_key
from internal.storage.local import LocalStorage, StoredObject
from internal.storage.signing import URLRefused

CHUNK_BYTES = 256 * 1024

log = logging.getLogger(__name__)


def storage_routes(storage: LocalStorage, max_put_bytes: int) -> list[BaseRoute]:
    """Routes for GET and PUT /storage/{key}, to mount at the root of the app at
    `storage`'s public URL."""
    if max_put_bytes <= 0:
        raise StorageError(f"max_put_bytes must be positive, not {max_put_bytes}")
    endpoint = _StorageEndpoint(storage, max_put_bytes)
    return [Route("/storage/{key:path}", endpoint.handle, methods=["GET", "HEAD", "PUT"])]


class _StorageEndpoint:
    def __init__(self, storage: LocalStorage, max_put_bytes: int) -> None:
        self._storage = storage
        self._max_put_bytes = max_put_bytes

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
            if await anyio.to_thread.run_sync(self._storage.exists, key):
                return _refuse(409, "the object exists: a presigned PUT URL is used once")
            return await self._receive(request, key, content_type)
        return await self._send(request, key)

    async def _send(self, request: Request, key: str) -> Response:
        try:
            stored = await anyio.to_thread.run_sync(self._storage.open, key)
        except ObjectNotFound:
            return _refuse(404, "no such object")
        headers = {
            "Content-Length": str(stored.size),
            # Set directly rather than as media_type, which would append a charset to text/*.
            "Content-Type": stored.content_type,
            "X-Content-Type-Options": "nosniff",
        }
        if request.method == "HEAD":
            stored.file.close()
            return Response(headers=headers)
        return StreamingResponse(_chunks(stored), headers=headers)

    async def _receive(self, request: Request, key: str, content_type: str) -> Response:
        too_large = _refuse(413, f"object larger than {self._max_put_bytes} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_put_bytes:
            return too_large
        try:
            upload = await anyio.to_thread.run_sync(self._storage.new_upload)
            try:
                async for chunk in request.stream():
                    if upload.size + len(chunk) > self._max_put_bytes:
                        return too_large
                    await anyio.to_thread.run_sync(upload.write, chunk)
                await anyio.to_thread.run_sync(
                    functools.partial(upload.commit, key, content_type, exclusive=True)
                )
            finally:
                await anyio.to_thread.run_sync(upload.discard)
        except ObjectExists:  # another PUT of the same URL finished first
            return _refuse(409, "the object exists: a presigned PUT URL is used once")
        except ClientDisconnect:
            return _refuse(400, "upload interrupted")
        except StorageError:
            log.exception("storing %s failed", key)
            return _refuse(500, "could not store the object")
        return Response(status_code=200)


async def _chunks(stored: StoredObject) -> AsyncIterator[bytes]:
    file: BinaryIO = stored.file
    try:
        while chunk := await anyio.to_thread.run_sync(file.read, CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


def _refuse(status: int, reason: str) -> Response:
    return PlainTextResponse(reason + "\n", status_code=status)

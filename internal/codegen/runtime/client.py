"""The generated Twirp clients' base classes: SyncClient (blocking) and AsyncClient (asyncio).
Generated clients subclass these and add one typed method per RPC. They send through a
transport (http11.py's, on httptools, by default); hand them another one, e.g. one
that wraps the default to spread calls over replicas or trace them.

Credentials: `credentials` is a bearer token (a str), or a callable returning one (called
per request, so it can refresh a short-lived token); it is sent as `Authorization: Bearer`.

Every failure is raised as TwirpError: error answers as their Twirp code (or, for a
non-Twirp answer from an intermediary, by HTTP status as the reference client does), a
timeout as deadline_exceeded and a connection failure as unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self, TypeVar

from google.protobuf.message import Message

from . import codec
from .errors import ErrorCode, TwirpError
from .http11 import HttptoolsSyncTransport, HttptoolsTransport
from .transport import (
    AsyncTransport,
    HTTPRequest,
    HTTPResponse,
    SyncTransport,
    TimedOut,
    TransportError,
)

M = TypeVar("M", bound=Message)

DEFAULT_TIMEOUT = 30.0

# A bearer token, or a callable returning the token to send with each request.
Credentials = str | Callable[[], str]


class _ClientBase:
    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/twirp",
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        use_json: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/") + "/" + prefix.strip("/")
        self.timeout = timeout
        self.content_type = codec.JSON if use_json else codec.PROTOBUF
        self.headers = {name.lower(): value for name, value in (headers or {}).items()}
        self.credentials = credentials

    def _prepare(
        self,
        route: str,
        request: Message,
        request_type: type[Message],
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> HTTPRequest:
        if not isinstance(request, request_type):
            raise TypeError(
                f"{route} takes {request_type.DESCRIPTOR.full_name}, not {type(request).__name__}"
            )
        merged = dict(self.headers)  # lower-case names: ours replace any spelling
        if self.credentials is not None:
            token = self.credentials if isinstance(self.credentials, str) else self.credentials()
            merged["authorization"] = f"Bearer {token}"
        for name, value in (headers or {}).items():
            merged[name.lower()] = value
        merged["content-type"] = merged["accept"] = self.content_type
        return HTTPRequest(
            url=f"{self.base_url.rstrip('/')}/{route}",
            headers=merged,
            body=codec.encode(request, self.content_type),
            timeout=self.timeout if timeout is None else timeout,
        )

    def _read(self, response: HTTPResponse, response_type: type[M]) -> M:
        if response.status != 200:
            raise TwirpError.from_response(
                response.status, response.body, response.headers.get("location")
            )
        answered = codec.media_type(response.headers.get("content-type"))
        if answered and answered != self.content_type:
            raise TwirpError(
                ErrorCode.INTERNAL,
                f"expected a {self.content_type} response, got {answered!r}",
            )
        try:
            return codec.decode(response.body, response_type, self.content_type)
        except TwirpError as exc:
            raise TwirpError(
                ErrorCode.INTERNAL, f"failed to decode the response: {exc.msg}"
            ) from exc


def _transport_error(route: str, exc: TransportError) -> TwirpError:
    if isinstance(exc, TimedOut):
        return TwirpError(ErrorCode.DEADLINE_EXCEEDED, f"{route}: timed out: {exc}")
    return TwirpError(
        ErrorCode.UNAVAILABLE, f"{route}: {exc}", {"cause": type(exc.__cause__ or exc).__name__}
    )


class SyncClient(_ClientBase):
    """Blocking Twirp client. Reuses connections; close it (or use `with`) when done. It
    closes only a transport it made: one handed to it stays open."""

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/twirp",
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        use_json: bool = False,
        transport: SyncTransport | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(
            base_url,
            prefix=prefix,
            timeout=timeout,
            headers=headers,
            use_json=use_json,
            credentials=credentials,
        )
        self._owns_transport = transport is None
        self.transport: SyncTransport = transport or HttptoolsSyncTransport()

    def _call(
        self,
        route: str,
        request: Message,
        request_type: type[Message],
        response_type: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> M:
        prepared = self._prepare(route, request, request_type, headers, timeout)
        try:
            response = self.transport.send(prepared)
        except TransportError as exc:
            raise _transport_error(route, exc) from exc
        return self._read(response, response_type)

    def close(self) -> None:
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """asyncio Twirp client. Reuses connections; close it (or use `async with`) when done.
    It closes only a transport it made: one handed to it stays open."""

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/twirp",
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        use_json: bool = False,
        transport: AsyncTransport | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(
            base_url,
            prefix=prefix,
            timeout=timeout,
            headers=headers,
            use_json=use_json,
            credentials=credentials,
        )
        self._owns_transport = transport is None
        self.transport: AsyncTransport = transport or HttptoolsTransport()

    async def _call(
        self,
        route: str,
        request: Message,
        request_type: type[Message],
        response_type: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> M:
        prepared = self._prepare(route, request, request_type, headers, timeout)
        try:
            response = await self.transport.send(prepared)
        except TransportError as exc:
            raise _transport_error(route, exc) from exc
        return self._read(response, response_type)

    async def aclose(self) -> None:
        if self._owns_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

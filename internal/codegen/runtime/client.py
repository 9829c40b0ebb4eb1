"""HTTP transports for the generated Twirp clients: one sync (httpx.Client) and one async
(httpx.AsyncClient). Generated clients subclass these and add one typed method per RPC.

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

import httpx
from google.protobuf.message import Message

from . import codec
from .errors import ErrorCode, TwirpError

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
        self.headers = dict(headers or {})
        self.credentials = credentials

    def _prepare(
        self,
        route: str,
        request: Message,
        request_type: type[Message],
        headers: Mapping[str, str] | None,
    ) -> tuple[str, bytes, httpx.Headers]:
        if not isinstance(request, request_type):
            raise TypeError(
                f"{route} takes {request_type.DESCRIPTOR.full_name}, not {type(request).__name__}"
            )
        merged = httpx.Headers(self.headers)  # case-insensitive: ours replace any spelling
        if self.credentials is not None:
            token = self.credentials if isinstance(self.credentials, str) else self.credentials()
            merged["Authorization"] = f"Bearer {token}"
        merged.update(headers or {})
        merged["Content-Type"] = merged["Accept"] = self.content_type
        url = f"{self.base_url.rstrip('/')}/{route}"
        return url, codec.encode(request, self.content_type), merged

    def _read(self, response: httpx.Response, response_type: type[M]) -> M:
        if response.status_code != 200:
            raise TwirpError.from_response(
                response.status_code, response.content, response.headers.get("Location")
            )
        answered = codec.media_type(response.headers.get("Content-Type"))
        if answered and answered != self.content_type:
            raise TwirpError(
                ErrorCode.INTERNAL,
                f"expected a {self.content_type} response, got {answered!r}",
            )
        try:
            return codec.decode(response.content, response_type, self.content_type)
        except TwirpError as exc:
            raise TwirpError(
                ErrorCode.INTERNAL, f"failed to decode the response: {exc.msg}"
            ) from exc

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout


def _transport_error(route: str, exc: httpx.HTTPError) -> TwirpError:
    if isinstance(exc, httpx.TimeoutException):
        return TwirpError(ErrorCode.DEADLINE_EXCEEDED, f"{route}: timed out: {exc}")
    return TwirpError(
        ErrorCode.UNAVAILABLE,
        f"{route}: {type(exc).__name__}: {exc}",
        {"cause": type(exc).__name__},
    )


class SyncClient(_ClientBase):
    """Blocking Twirp client. Reuses connections; close it (or use `with`) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/twirp",
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        use_json: bool = False,
        http_client: httpx.Client | None = None,
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
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(follow_redirects=False)

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
        url, body, merged = self._prepare(route, request, request_type, headers)
        try:
            response = self._http.post(
                url, content=body, headers=merged, timeout=self._timeout(timeout)
            )
        except httpx.HTTPError as exc:
            raise _transport_error(route, exc) from exc
        return self._read(response, response_type)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

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
    """asyncio Twirp client. Reuses connections; close it (or use `async with`) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/twirp",
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        use_json: bool = False,
        http_client: httpx.AsyncClient | None = None,
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
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(follow_redirects=False)

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
        url, body, merged = self._prepare(route, request, request_type, headers)
        try:
            response = await self._http.post(
                url, content=body, headers=merged, timeout=self._timeout(timeout)
            )
        except httpx.HTTPError as exc:
            raise _transport_error(route, exc) from exc
        return self._read(response, response_type)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

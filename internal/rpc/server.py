"""TwirpApp: the `twirp` runtime's ASGI app, corrected where it departs from Twirp v7 as the
reference Go server speaks it.

The runtime keeps the request flow (routing hooks, middlewares, running plain handlers in a
thread pool); this layer replaces the parts it gets wrong:

- an unknown service or method is bad_route 404 (the runtime answers not_found/unimplemented);
- Content-Type parameters are ignored ("application/json; charset=utf-8" is JSON) and an
  unknown type is bad_route;
- JSON uses proto field names and emits every field, ignores unknown fields, accepts
  lowerCamelCase, int64 as strings, enums by name (codec from the generated runtime);
- errors are always the Twirp JSON object with string meta, including errors raised as the
  generated clients' TwirpError and unexpected exceptions (internal, logged);
- request bodies are read without quadratic copying, up to a limit with a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from mcsv.twirp import ErrorCode, TwirpError, codec
from twirp import ctxkeys
from twirp import exceptions as twirp_exceptions
from twirp.asgi import TwirpASGIApp

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class TwirpApp(TwirpASGIApp):  # type: ignore[misc]  # the runtime is untyped
    """Serves generated *Server instances, routing on the full request path. Mount it last, at
    the root, so that every path no other route takes gets a Twirp bad_route as from the
    reference server: Starlette(routes=[Route("/health", ...),
    Mount("/", app=TwirpApp(UserServiceServer(service=impl)))])."""

    def __init__(
        self,
        *servers: Any,
        middlewares: Iterable[Any] = (),
        hook: Any = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(*middlewares, hook=hook, max_receive_message_length=max_body_bytes)
        for server in servers:
            self.add_service(server)

    @property
    def max_body_bytes(self) -> int:
        return int(self._max_receive_message_length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own, outside a Starlette app
            await _serve_lifespan(receive, send)
            return
        await super().__call__(scope, receive, send)

    def _get_endpoint(self, path: str) -> Any:
        service_path, _, method = path.rpartition("/")
        server = self._services.get(service_path)
        endpoint = server._endpoints.get(method) if server is not None else None
        if endpoint is None:
            raise _RouteError(f"no handler for path {path!r}")
        return endpoint

    def _get_encoder_decoder(self, endpoint: Any, headers: dict[str, str]) -> tuple[Any, Any]:
        content_type = codec.media_type(headers.get("content-type"))
        if content_type not in codec.CONTENT_TYPES:
            raise _RouteError(f"unexpected Content-Type: {headers.get('content-type', '')!r}")

        def decode(body: bytes) -> Any:
            return codec.decode(body, endpoint.input, content_type)

        def encode(response: Any) -> tuple[bytes, dict[str, str]]:
            if not isinstance(response, endpoint.output):
                raise TwirpError(
                    ErrorCode.INTERNAL,
                    f"{endpoint.service_name}/{endpoint.name} returned "
                    f"{type(response).__name__}, expected {endpoint.output.DESCRIPTOR.full_name}",
                )
            return codec.encode(response, content_type), {"Content-Type": content_type}

        return encode, decode

    def validate_content_length(self, headers: dict[str, str]) -> None:
        try:
            length = int(headers.get("content-length", ""))
        except ValueError:
            return
        if length > self.max_body_bytes:
            raise self._too_large()

    async def _recv_all(self, receive: Receive) -> bytes:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise self._too_large()
            if not message.get("more_body", False):
                return bytes(body)

    def _too_large(self) -> TwirpError:
        return TwirpError(
            ErrorCode.INVALID_ARGUMENT,
            f"request body is larger than the limit of {self.max_body_bytes} bytes",
            {"max_body_bytes": self.max_body_bytes},
        )

    async def handle_error(
        self, ctx: Any, exc: BaseException, scope: Scope, receive: Receive, send: Send
    ) -> None:
        error = _as_twirp_error(exc, scope)
        ctx.set(ctxkeys.ORIGINAL_EXCEPTION, exc)
        ctx.set(ctxkeys.RESPONSE_STATUS, error.http_status)
        self._hook.error(ctx=ctx, exc=error)
        await self._respond(
            send=send,
            status=error.http_status,
            headers={"Content-Type": codec.JSON},
            body_bytes=error.to_json_bytes(),
        )
        self._hook.response_sent(ctx=ctx)


class _RouteError(TwirpError):
    """A request this layer cannot route to a method; it gets the twirp_invalid_route meta."""

    def __init__(self, msg: str) -> None:
        super().__init__(ErrorCode.BAD_ROUTE, msg)


def _as_twirp_error(exc: BaseException, scope: Scope) -> TwirpError:
    if isinstance(exc, _RouteError):
        return exc.with_meta(twirp_invalid_route=f"{scope['method']} {scope['path']}")
    if isinstance(exc, TwirpError):
        return exc
    if isinstance(exc, twirp_exceptions.TwirpServerException):
        return TwirpError(exc.code.value or ErrorCode.UNKNOWN, exc.message, exc.meta)
    log.error("unhandled exception in %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return TwirpError(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

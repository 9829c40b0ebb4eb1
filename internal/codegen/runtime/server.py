"""Server runtime for the generated Twirp code: ServiceServer (the base of each generated
<Service>Server), Endpoint (one RPC of it) and TwirpApp, an ASGI app serving them with the
wire behaviour of the reference Go server (twitchtv/twirp, protocol v7):

- only POST [prefix]/<package>.<Service>/<Method> is routed; any other method, path or
  Content-Type is bad_route 404 with meta twirp_invalid_route "METHOD /path";
- Content-Type parameters and case are ignored ("Application/JSON; charset=utf-8" is JSON);
- bodies are decoded by codec: undecodable is malformed 400; an enum value the contract does
  not define is invalid_argument 400 with meta argument = the field's path;
- with a body budget (body_budget_bytes, budget.py), large bodies wait for their share of
  it before they are read, so that many large uploads at once hold bounded memory;
- the body is limited (max_body_bytes, default 16 MiB: invalid_argument with meta
  max_body_bytes, by Content-Length or while reading) and must arrive within
  body_read_timeout seconds (default 10) plus one second for every body_min_rate bytes
  received (default 16 KiB; None: no more time), else deadline_exceeded 408: a body that
  keeps coming is read however long it takes, a stalled or trickling one is cut off; after
  either error the connection is closed (Connection: close), since the rest of the body was
  not read;
- an error answered before the body was read (a bad route, a hook's refusal) first reads and
  drops the body, up to 64 KiB, so that the connection can serve the next request (ASGI
  servers close it otherwise, racing a client that reuses it); a larger one closes it;
- errors are always the Twirp JSON object with string meta; a handler's unexpected exception
  is internal (logged, no details to the caller), and so is a response of the wrong type;
- plain handlers run in a thread pool, async handlers on the event loop; an async handler
  is cancelled when the client goes away while it runs (as Go's net/http cancels the
  request's context): its answer could reach no one, and a caller that died and retries
  elsewhere must not race its own earlier attempt;
- served on its own (not mounted), it answers the lifespan protocol.

It needs nothing beyond the standard library and protobuf; serve it with any ASGI server:
    app = TwirpApp(UserServiceServer(service=Users()))      # uvicorn module:app
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from . import codec
from .budget import BodyBudget
from .context import Context, ServerContext
from .errors import ErrorCode, TwirpError
from .hooks import ServerHooks

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_BODY_READ_TIMEOUT = 10.0
# Bytes a second that earn a body one more second: 128 kbit/s, slower than any link a
# multi-megabyte upload is sent over, and yet a slow drip holds a connection (and its share of
# the body budget) only as long as it keeps sending that much.
DEFAULT_BODY_MIN_RATE = 16 * 1024
_DRAIN_LIMIT = 64 * 1024
# How long an async handler runs before the server watches for its client going away.
WATCH_AFTER_SECONDS = 0.05

# The ASGI callable's types, as ASGI frameworks (Starlette) spell them.
Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


@dataclass(frozen=True)
class Endpoint(Generic[Req, Resp]):
    """One RPC: its name, the implementation's method (plain or async), and its messages."""

    name: str
    function: Callable[[Context, Req], Resp | Awaitable[Resp]]
    input: type[Req]
    output: type[Resp]


class ServiceServer:
    """The RPCs of one service under a path prefix: generated <Service>Server classes build
    one from an implementation. prefix "/twirp" serves POST /twirp/<service_name>/<Method>."""

    def __init__(
        self, service_name: str, endpoints: Iterable[Endpoint[Any, Any]], *, prefix: str = "/twirp"
    ) -> None:
        base = prefix.strip("/")
        self.service_name = service_name
        self.prefix = f"/{base}/{service_name}" if base else f"/{service_name}"
        self.endpoints: dict[str, Endpoint[Any, Any]] = {e.name: e for e in endpoints}


@dataclass(frozen=True)
class _Route:
    service_name: str
    endpoint: Endpoint[Any, Any]


class _ClosingError(TwirpError):
    """An error after which the rest of the request body is unread: the answer closes the
    connection."""


class _Body:
    """The request body as it arrives through the ASGI receive callable."""

    def __init__(self, receive: Receive, headers: Mapping[str, str]) -> None:
        self._receive = receive
        self.length = _content_length(headers)
        # done: all of it received (a request without Content-Length or chunks has none)
        self.done = self.length == 0 or (self.length is None and "transfer-encoding" not in headers)

    async def gone(self) -> bool:
        """Waits for the next event after the whole body: True when the client went away
        (servers answer nothing more before the response is complete)."""
        message = await self._receive()
        return bool(message["type"] == "http.disconnect")

    async def chunk(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise _ClosingError(ErrorCode.CANCELED, "the client went away before sending the body")
        self.done = not message.get("more_body", False)
        return bytes(message.get("body", b""))


class TwirpApp:
    """An ASGI app serving ServiceServers. Mount it at the root (or serve it on its own) so
    that every path no other route takes gets a Twirp bad_route, as from the reference
    server."""

    def __init__(
        self,
        *servers: ServiceServer,
        hooks: Iterable[ServerHooks] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_read_timeout: float | None = DEFAULT_BODY_READ_TIMEOUT,
        body_budget_bytes: int | None = None,
        body_min_rate: int | None = DEFAULT_BODY_MIN_RATE,
    ) -> None:
        self.hooks = list(hooks)
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout = body_read_timeout
        self.body_min_rate = body_min_rate
        # None: no budget (each request may hold up to max_body_bytes at once).
        self.body_budget = BodyBudget(body_budget_bytes) if body_budget_bytes else None
        self._routes: dict[str, _Route] = {}
        for server in servers:
            self.add(server)

    def add(self, server: ServiceServer) -> None:
        """Serves one more service; a route that is served already is a ValueError."""
        for name, endpoint in server.endpoints.items():
            path = f"{server.prefix}/{name}"
            if path in self._routes:
                raise ValueError(f"{path} is served twice")
            self._routes[path] = _Route(server.service_name, endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._serve(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = ServerContext(scope["method"], scope["path"], _headers(scope))
        incoming = _Body(receive, ctx.headers)
        try:
            try:
                body, content_type = await self._answer(ctx, scope, incoming)
                headers = {**ctx.response_headers, "content-type": content_type}
                start = _response_start(200, headers, len(body))
                ctx.status = 200
            except Exception as exc:
                error = _as_twirp_error(exc, ctx)
                close = isinstance(error, _ClosingError) or not await self._drain(incoming)
                ctx.status = error.http_status
                body = error.to_json_bytes()
                headers = {"content-type": codec.JSON, **({"connection": "close"} if close else {})}
                start = _response_start(error.http_status, headers, len(body))
                self._notify("error", lambda hook: hook.error(ctx, error))
            try:
                await send(start)
                await send({"type": "http.response.body", "body": body})
            except OSError:  # the ASGI server's signal that the client is gone
                log.debug("could not answer %s %s: the client is gone", ctx.http_method, ctx.path)
        finally:
            self._notify("response_sent", lambda hook: hook.response_sent(ctx))

    async def _answer(self, ctx: ServerContext, scope: Scope, incoming: _Body) -> tuple[bytes, str]:
        """The encoded response and its Content-Type; raises for every error answer."""
        for hook in self.hooks:
            hook.request_received(ctx)
        if ctx.http_method != "POST":
            raise _bad_route(ctx, f"unsupported method {ctx.http_method} (only POST is allowed)")
        route = self._routes.get(_route_path(scope))
        if route is None:
            raise _bad_route(ctx, f"no handler for path {ctx.path!r}")
        if incoming.length is not None and incoming.length > self.max_body_bytes:
            raise self._too_large()
        content_type = codec.media_type(ctx.headers.get("content-type"))
        if content_type not in codec.CONTENT_TYPES:
            raise _bad_route(
                ctx, f"unexpected Content-Type: {ctx.headers.get('content-type', '')!r}"
            )
        endpoint = route.endpoint
        ctx.service_name, ctx.method_name = route.service_name, endpoint.name
        for hook in self.hooks:
            hook.request_routed(ctx)
        if self.body_budget is None:
            response = await self._decode_and_call(incoming, endpoint, content_type, ctx)
        else:
            # Held until the answer is encoded: the request's bytes live that long.
            cost = self.max_body_bytes if incoming.length is None else incoming.length
            async with self.body_budget.reserve(0 if incoming.done else cost):
                response = await self._decode_and_call(incoming, endpoint, content_type, ctx)
        if not isinstance(response, endpoint.output):
            raise TwirpError(
                ErrorCode.INTERNAL,
                f"{route.service_name}/{endpoint.name} returned {type(response).__name__}, "
                f"expected {endpoint.output.DESCRIPTOR.full_name}",
            )
        for hook in self.hooks:
            hook.response_prepared(ctx)
        return codec.encode(response, content_type), content_type

    async def _decode_and_call(
        self, incoming: _Body, endpoint: Endpoint[Any, Any], content_type: str, ctx: ServerContext
    ) -> Any:
        # The body is dropped once decoded: only the message stays while the handler runs.
        request = codec.decode(
            await self._read_body(incoming), endpoint.input, content_type, known_enums_only=True
        )
        return await _call_while_connected(endpoint.function, ctx, request, incoming)

    async def _read_body(self, incoming: _Body) -> bytes | bytearray:
        """The whole body. With a Content-Length it is read into one buffer of that size (no
        second copy to join the pieces)."""
        chunks: list[bytes] = []
        buffer = bytearray(incoming.length) if incoming.length else None
        size = 0
        expiry = _Expiry(self.body_read_timeout, self.body_min_rate)
        try:
            while True:
                chunk = await incoming.chunk()
                if size + len(chunk) > self.max_body_bytes:
                    raise self._too_large()
                if buffer is not None and size + len(chunk) <= len(buffer):
                    buffer[size : size + len(chunk)] = chunk
                else:
                    chunks.append(chunk)
                size += len(chunk)
                expiry.received = size
                if incoming.done:
                    if buffer is None:
                        return b"".join(chunks)
                    if chunks or size != len(buffer):  # not what Content-Length said
                        return bytes(buffer[:size]) + b"".join(chunks)
                    return buffer
        except asyncio.CancelledError:
            if not expiry.withdrawn():
                raise
            raise self._too_slow(size, incoming.length, expiry.elapsed) from None
        finally:
            expiry.stop()

    async def _drain(self, incoming: _Body) -> bool:
        """Reads and drops what is left of the body, up to 64 KiB and within body_read_timeout:
        whether all of it came (then the connection can serve another request)."""
        if incoming.done:
            return True
        if incoming.length is not None and incoming.length > _DRAIN_LIMIT:
            return False
        size = 0
        try:
            async with asyncio.timeout(self.body_read_timeout):
                while not incoming.done:
                    size += len(await incoming.chunk())
                    if size > _DRAIN_LIMIT:
                        return False
        except (TimeoutError, TwirpError):
            return False
        return True

    def _too_slow(self, size: int, length: int | None, elapsed: float) -> TwirpError:
        meta = {"body_read_timeout": f"{self.body_read_timeout:g}s"}
        of = f" of {length}" if length is not None else ""
        if self.body_min_rate:
            meta["body_min_rate"] = str(self.body_min_rate)
            allowed = (f"{self.body_read_timeout:g} s and one more per {self.body_min_rate}"
                       " bytes received")  # fmt: skip
        else:
            allowed = f"{self.body_read_timeout:g} s"
        return _ClosingError(
            ErrorCode.DEADLINE_EXCEEDED,
            f"the request body did not arrive in time: {size}{of} bytes came in {elapsed:.1f} s"
            f" (allowed: {allowed})",
            meta,
        )

    def _too_large(self) -> TwirpError:
        return _ClosingError(
            ErrorCode.INVALID_ARGUMENT,
            f"request body is larger than the limit of {self.max_body_bytes} bytes",
            {"max_body_bytes": self.max_body_bytes},
        )

    def _notify(self, step: str, call: Callable[[ServerHooks], None]) -> None:
        """Runs a hook that cannot change the answer any more; its exceptions are logged."""
        for hook in self.hooks:
            try:
                call(hook)
            except Exception:
                log.exception("hook %s.%s failed", type(hook).__name__, step)


class _Expiry:
    """Cancels the task reading a request body once its deadline passes (seconds None:
    never). The deadline is `seconds` after the read starts, moved on by one second for
    every `min_rate` bytes received (None: not moved), as Apache's mod_reqtimeout MinRate:
    a body that keeps coming at min_rate or faster is never cut off, however long it is or
    however late its sender gets round to the rest of it, while one that stalls or trickles
    is. A plain timer, re-armed only when it fires, and none of asyncio.timeout's coroutines
    (asyncio.timeout was 4% of a served call's instructions, callgrind)."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_min_rate", "_seconds", "_start",
                 "_task", "received")  # fmt: skip

    def __init__(self, seconds: float | None, min_rate: int | None = None) -> None:
        self._expired = False
        self._task = asyncio.current_task()
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self._seconds = seconds or 0.0
        self._min_rate = min_rate
        self._start = 0.0
        self.received = 0  # bytes so far, kept up to date by the reader
        if seconds is not None and self._task is not None:
            self._cancelling = self._task.cancelling()
            loop = asyncio.get_running_loop()
            self._start = loop.time()
            self._handle = loop.call_at(self._start + seconds, self._expire)

    @property
    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._start

    def _deadline(self) -> float:
        earned = self.received / self._min_rate if self._min_rate else 0.0
        return self._start + self._seconds + earned

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._deadline()
        if loop.time() < deadline:  # the bytes received since the timer was set earned time
            self._handle = loop.call_at(deadline, self._expire)
            return
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def withdrawn(self) -> bool:
        """On a CancelledError: whether the expiry caused it, and nothing else asked for one;
        then the cancellation is withdrawn (as asyncio.timeout turns it into TimeoutError)."""
        if not self._expired or self._task is None:
            return False
        return self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def _call_while_connected(
    function: Callable[..., Any], ctx: ServerContext, request: Message, incoming: _Body
) -> Any:
    """Runs a handler; an async one is cancelled should the client go away meanwhile. The
    watch for that starts once the handler has run WATCH_AFTER_SECONDS: most answer sooner,
    and a watching task per call was a twentieth of a served call's instructions."""
    handler = asyncio.current_task()
    if not inspect.iscoroutinefunction(function) or not incoming.done or handler is None:
        return await _call(function, ctx, request)
    went_away = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal went_away
        if await incoming.gone():
            went_away = True
            handler.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.create_task(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, start_watching)
    try:
        return await function(ctx, request)
    except asyncio.CancelledError:
        if not went_away:
            raise
        handler.uncancel()
        raise _ClosingError(ErrorCode.CANCELED, "the client went away") from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
        if went_away and handler.cancelling():  # cancelled just as the handler returned
            handler.uncancel()


async def _call(function: Callable[..., Any], ctx: ServerContext, request: Message) -> Any:
    """Runs a handler: async ones on the loop, plain ones in the default thread pool (with
    the caller's contextvars)."""
    if inspect.iscoroutinefunction(function):
        return await function(ctx, request)
    result = await asyncio.to_thread(function, ctx, request)
    if inspect.isawaitable(result):  # a plain callable that returns an awaitable
        result = await result
    return result


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _route_path(scope: Scope) -> str:
    """The path below the app's mount point (ASGI root_path), which routes are matched on."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def _bad_route(ctx: ServerContext, msg: str) -> TwirpError:
    return TwirpError(
        ErrorCode.BAD_ROUTE, msg, {"twirp_invalid_route": f"{ctx.http_method} {ctx.path}"}
    )


def _as_twirp_error(exc: Exception, ctx: ServerContext) -> TwirpError:
    if isinstance(exc, TwirpError):
        return exc
    log.error("unhandled exception in %s %s", ctx.http_method, ctx.path, exc_info=exc)
    return TwirpError(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


def _response_start(status: int, headers: Mapping[str, str], length: int) -> ASGIMessage:
    """The http.response.start message; raises for a header that is not latin-1."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(length).encode("ascii")))
    return {"type": "http.response.start", "status": status, "headers": raw}


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

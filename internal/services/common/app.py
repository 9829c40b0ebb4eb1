"""What every service app has in common: /health, /ready, /metrics, the Twirp servers mounted
at the root (authenticated: internal.auth; observed: spans, request metrics), and serving
with uvicorn (httptools, uvloop) until SIGTERM or SIGINT. Why uvicorn and not hypercorn, the
design card's server: README, "Why uvicorn serves the services"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import uvicorn
from mcsv.twirp import DEFAULT_MAX_BODY_BYTES, TwirpApp
from mcsv.twirp.server import Receive, Scope, Send, ServiceServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from internal import config
from internal.auth.hooks import AuthHooks
from internal.observability import ObservedTwirp, TwirpObserver
from internal.services.common.docs import docs_routes
from internal.services.common.http_protocol import CoalescingHttpToolsProtocol
from internal.services.common.readiness import READY_TIMEOUT_SECONDS, ReadyProbe, run_probe

log = logging.getLogger(__name__)


def service_app(
    name: str,
    settings: config.Settings,
    servers: Sequence[ServiceServer],
    *,
    ready_checks: Mapping[str, ReadyProbe] | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    before_metrics: Callable[[], None] | None = None,
) -> Starlette:
    checks = ready_checks or {}

    async def metrics(_: Request) -> Response:
        if before_metrics is not None:
            await asyncio.to_thread(before_metrics)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return PlainTextResponse(f"{name} alive")

    async def ready(_: Request) -> Response:
        results = {check: await run_probe(probe, ready_timeout) for check, probe in checks.items()}
        failing = {check: problem for check, problem in results.items() if problem}
        body = {"service": name, "ready": not failing, "checks": results}
        return JSONResponse(body, status_code=503 if failing else 200)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for startup in on_startup:  # e.g. background tasks, stopped by on_shutdown
            await startup()
        yield
        for shutdown in on_shutdown:
            await shutdown()

    twirp = ObservedTwirp(
        TwirpApp(
            *servers,
            # The observer first, so that refused calls are traced and counted.
            hooks=[TwirpObserver(), AuthHooks(settings, name)],
            max_body_bytes=max_body_bytes,
            body_read_timeout=settings.rpc_body_timeout_seconds,
            body_min_rate=settings.rpc_body_min_rate_bytes or None,
            body_budget_bytes=settings.rpc_body_budget_bytes or None,
        )
    )
    return _ServiceApp(
        twirp,
        tuple(f"{server.prefix}/" for server in servers),
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
            *docs_routes(name),  # Swagger UI at /docs
            *routes,
            Mount("/", app=twirp),  # every other path: a Twirp bad_route
        ],
        lifespan=lifespan,
    )


class _ServiceApp(Starlette):
    """The service's Starlette app, except that a request under a served service's path
    prefix goes straight to the (observed) Twirp app: Starlette's router and middleware took
    a third of a served call's time (py-spy, under load) and do nothing for those requests."""

    def __init__(self, twirp: ObservedTwirp, prefixes: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._twirp = twirp
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self._prefixes):
            await self._twirp(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


GRACEFUL_SHUTDOWN_SECONDS = 10

# How long a server keeps an idle connection open: far longer than the generated clients keep
# one for reuse (mcsv.twirp's KEEPALIVE_SECONDS, 4 s). With uvicorn's 5 s, a busy client could
# pick a connection 3.9 s idle and send on it after the server's timer had closed it (100
# concurrent 10 MB uploads: one in a hundred failed with a broken pipe); the margin has to
# cover how late a loaded client or server gets round to it.
KEEP_ALIVE_SECONDS = 60


# How often an idle server's loop wakes: to renew the Date header, which has a resolution of a
# second. uvicorn's own loop wakes ten times a second to look for a stop; here the stop wakes it.
TICK_SECONDS = 1.0


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by SIGTERM or SIGINT through the event loop: it stops
    accepting, finishes the requests in flight (at most GRACEFUL_SHUTDOWN_SECONDS) and
    returns, so that the process exits 0 (uvicorn's own handlers raise the signal again once
    it is done, which would end the process by the signal). Idle, it wakes once a second,
    not ten times (`split idle`: a wake-up costs an idle process ~0.15 ms of CPU)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        self.should_exit = True
        if self._stopping is not None:
            self._stopping.set()

    async def main_loop(self) -> None:
        """uvicorn's main loop (on_tick renews the Date header and says when to stop), ticking
        every TICK_SECONDS or at once when a signal asks it to stop. on_tick renews the header
        when its count is a multiple of ten: 0 on every tick here."""
        self._stopping = asyncio.Event()
        if self.should_exit:  # a signal came before the loop
            self._stopping.set()
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK_SECONDS)


def run(app: Starlette, host: str, port: int) -> None:
    """Serves the app until SIGTERM or SIGINT, then finishes in-flight requests."""
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=CoalescingHttpToolsProtocol,  # httptools, one write per response
        loop="uvloop",
        ws="none",
        lifespan="on",
        log_config=None,  # uvicorn's own logs go through our handler: JSON lines
        access_log=False,  # ObservedTwirp logs one line per Twirp request
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    _Server(server_config).run()

"""What every service app has in common: /health, /ready, /metrics, the Twirp servers mounted
at the root (authenticated: internal.auth; observed: spans, request metrics), and serving
with hypercorn until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from hypercorn.asyncio import serve
from hypercorn.config import Config
from mcsv.twirp import DEFAULT_MAX_BODY_BYTES, TwirpApp
from mcsv.twirp.server import ServiceServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from internal import config
from internal.auth.hooks import AuthHooks
from internal.observability import ObservedTwirp, TwirpObserver
from internal.services.common.docs import docs_routes
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

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
            *docs_routes(name),  # Swagger UI at /docs
            *routes,
            Mount(
                "/",
                app=ObservedTwirp(
                    TwirpApp(
                        *servers,
                        # The observer first, so that refused calls are traced and counted.
                        hooks=[TwirpObserver(), AuthHooks(settings, name)],
                        max_body_bytes=max_body_bytes,
                        body_read_timeout=settings.rpc_body_timeout_seconds,
                    )
                ),
            ),
        ],
        lifespan=lifespan,
    )


def run(app: Starlette, host: str, port: int) -> None:
    """Serves the app until SIGTERM or SIGINT, then finishes in-flight requests."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our handler: JSON lines
    config.graceful_timeout = 10

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())

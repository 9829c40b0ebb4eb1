"""The console's app: its pages under /console (the operator's only: operator_pages), the job
RPCs its scripts call at /console/twirp (relay.py), its static files, and what every service
app has (/health, /ready, /metrics). Everything it shows it reads through the other
services' generated clients, calling as the operator."""

from __future__ import annotations

from pathlib import Path

from mcsv.twirp import TwirpApp
from mcsv.v1.email_twirp import AsyncEmailServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient
from mcsv.v1.job_twirp_server import JobServiceServer
from mcsv.v1.user_twirp import AsyncUserServiceClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from internal import config
from internal.auth.pages import operator_pages
from internal.observability import ObservedTwirp, TwirpObserver
from internal.peers import AsyncPeers, async_http_client
from internal.services.common.app import service_app
from internal.services.console.relay import ConsoleSession, JobRelay
from internal.services.console.views import PREFIX, Clients, console_routes

NAME = "console"
STATIC = Path(__file__).parent / "static"


def create_app(settings: config.Settings) -> Starlette:
    peers = AsyncPeers(settings, identity="operator")
    http = async_http_client()
    clients = Clients(
        jobs=peers.client(AsyncJobServiceClient),
        users=peers.client(AsyncUserServiceClient),
        emails=peers.client(AsyncEmailServiceClient),
        http=http,
    )
    relay = TwirpApp(
        JobServiceServer(service=JobRelay(clients.jobs), server_path_prefix=""),
        hooks=[TwirpObserver(), ConsoleSession(settings)],
    )

    async def home(_: Request) -> Response:
        return RedirectResponse(PREFIX, status_code=307)

    async def close() -> None:
        await peers.aclose()
        await http.aclose()

    return service_app(
        NAME,
        settings,
        [],
        routes=[
            Route("/", home),
            Mount(f"{PREFIX}/static", app=StaticFiles(directory=STATIC)),
            Mount(f"{PREFIX}/twirp", app=ObservedTwirp(relay)),
            *operator_pages(settings, PREFIX, console_routes(settings, clients)),
        ],
        on_shutdown=[close],
    )

"""Starting a service process by name, from the settings: what the cmd/ scripts call.

APP_MODULES says where each service of internal.registry builds its app: a module with
`create_app(settings) -> Starlette`. It is imported only when that service starts, so that a
process loads its own service's dependencies and no other's."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from starlette.applications import Starlette

from internal import config, observability
from internal.services.common.app import run
from internal.services.common.memory import collect_less_often, return_large_blocks

log = logging.getLogger(__name__)

AppFactory = Callable[[config.Settings], Starlette]

APP_MODULES: dict[str, str] = {
    "client_svc": "internal.services.client_svc.app",
    "user_svc": "internal.services.user_svc.app",
    "job_svc": "internal.services.job_svc.app",
    "email_svc": "internal.services.email_svc.app",
    "image_svc": "internal.services.image_svc.app",
    "console": "internal.services.console.app",
}


def app_factory(service: str) -> AppFactory:
    """The function that builds the service's app."""
    factory: AppFactory = importlib.import_module(APP_MODULES[service]).create_app
    return factory


def serve(service: str) -> None:
    """Runs one service until SIGTERM/SIGINT."""
    observability.configure(service)
    return_large_blocks()  # before any request: a freed large body goes back to the system
    settings = config.load()
    app = app_factory(service)(settings)
    host, port = settings.bind(service)
    log.info("%s listening on %s", service, settings.url(service))
    serve_app(app, host, port)


def serve_app(app: Starlette, host: str, port: int) -> None:
    """Serves a built app as every service is served: startup's objects frozen out of the
    garbage collector's way, then uvicorn until SIGTERM/SIGINT."""
    collect_less_often()
    run(app, host, port)

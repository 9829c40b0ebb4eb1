"""client_svc's app: the ClientService RPC on the notifications table."""

from __future__ import annotations

from mcsv.v1.client_twirp_server import ClientServiceServer
from starlette.applications import Starlette

from internal import config
from internal.services.client_svc.service import (
    NAME,
    ClientService,
    Notification,
    open_notifications,
)
from internal.services.common.app import service_app
from internal.services.common.readiness import database_probe


def create_app(settings: config.Settings) -> Starlette:
    database = open_notifications(settings)
    service = ClientService(database)
    return service_app(
        NAME,
        settings,
        [ClientServiceServer(service=service)],
        ready_checks={"database": database_probe(database, Notification)},
    )

"""user_svc's app: the UserService RPCs, its peers job_svc and client_svc, the outbox relay
(running for the app's lifetime), the periodic sweeps of expired uploads and of the outbox's
old records, and, with the file storage backend, the routes that serve its presigned URLs."""

from __future__ import annotations

from mcsv.v1.client_twirp import AsyncClientServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient
from mcsv.v1.user_twirp_server import UserServiceServer
from starlette.applications import Starlette

from internal import config, storage
from internal.peers import AsyncPeers
from internal.services.common.app import service_app
from internal.services.common.periodic import Periodic
from internal.services.common.readiness import database_probe
from internal.services.user_svc.models import NAME, UserRow, open_users
from internal.services.user_svc.service import UserService

# How often the outbox's finished intents past OUTBOX_RETENTION_SECONDS are deleted.
PRUNE_INTERVAL_SECONDS = 60.0


def create_app(settings: config.Settings) -> Starlette:
    database = open_users(settings.database_url_for(NAME))
    store = storage.open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    peers = AsyncPeers(settings, identity=NAME)
    jobs = peers.client(AsyncJobServiceClient)
    client = peers.client(AsyncClientServiceClient)
    service = UserService(database, store, jobs, client, settings)

    routes = (
        storage.storage_routes(
            store,
            max_put_bytes=settings.max_upload_bytes * 4,
            body_timeout=settings.rpc_body_timeout_seconds,
            body_min_rate=settings.rpc_body_min_rate_bytes or None,
        )
        if isinstance(store, storage.LocalStorage)
        else []
    )
    sweeper = Periodic("sweep-uploads", service.retention.sweep_interval(), service.sweep_uploads)
    pruner = Periodic("prune-outbox", PRUNE_INTERVAL_SECONDS, service.prune_outbox)
    app = service_app(
        NAME,
        settings,
        [UserServiceServer(service=service)],
        ready_checks={
            "database": database_probe(database, UserRow),
            "storage": lambda: store.exists("health/probe"),
        },
        routes=routes,
        # The upload RPC carries the image: room for it plus the rest of the message.
        max_body_bytes=settings.max_upload_bytes + 64 * 1024,
        on_startup=[service.relay.start],  # relays what an earlier process left pending
        on_shutdown=[service.relay.stop, sweeper.closer(), pruner.closer(), peers.aclose],
    )
    sweeper.start()
    pruner.start()
    return app

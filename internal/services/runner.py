"""Starting a service or a worker process from the settings: what cmd/ scripts call."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import prometheus_client
from starlette.applications import Starlette

from internal import config, observability
from internal.services.common.app import run

log = logging.getLogger(__name__)


def _client_svc(settings: config.Settings) -> Starlette:
    from internal.services.client_svc import service as client_svc

    return client_svc.create_app(settings)


def _user_svc(settings: config.Settings) -> Starlette:
    from internal.services.user_svc import service as user_svc

    return user_svc.create_app(settings)


def _job_svc(settings: config.Settings) -> Starlette:
    from internal.queue import open_broker
    from internal.services.job_svc import store as job_svc

    return job_svc.create_app(settings, open_broker(settings.broker_url))


def _email_svc(settings: config.Settings) -> Starlette:
    from internal.services.email_svc import service as email_svc

    return email_svc.create_app(settings)


def _image_svc(settings: config.Settings) -> Starlette:
    from internal.services.image_svc import service as image_svc

    return image_svc.create_app(settings)


APPS: dict[str, Callable[[config.Settings], Starlette]] = {
    "client_svc": _client_svc,
    "user_svc": _user_svc,
    "job_svc": _job_svc,
    "email_svc": _email_svc,
    "image_svc": _image_svc,
}


def serve(service: str) -> None:
    """Runs one service until SIGTERM/SIGINT."""
    observability.configure(service)
    settings = config.load()
    app = APPS[service](settings)
    host, port = settings.bind(service)
    log.info("%s listening on %s", service, settings.url(service))
    run(app, host, port)


def work(threads: int = 4) -> None:
    """Runs a job worker (job_svc's actors) until SIGTERM/SIGINT, finishing jobs in hand."""
    import dramatiq

    from internal.queue import open_broker
    from internal.services.job_svc import store as job_svc
    from internal.services.job_svc import worker as job_worker

    observability.configure("job_worker")
    settings = config.load()
    broker = open_broker(
        settings.broker_url, visibility_timeout=settings.job_visibility_timeout_seconds
    )
    broker.add_middleware(observability.TracingMiddleware())
    host, port = settings.worker_metrics_bind()
    prometheus_client.start_http_server(port, addr=host)
    store = job_svc.open_jobs(settings)
    jobs = job_worker.Jobs(store, job_worker.Peers.from_settings(settings), settings)
    job_worker.declare_actors(broker, jobs, settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    log.info("job worker %s running %d threads on %s", job_svc.this_worker(), threads,
             settings.broker_url)  # fmt: skip
    stop.wait()
    log.info("job worker stopping: finishing the jobs in hand")
    worker.stop()
    broker.close()

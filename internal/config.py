"""Settings: the one place that reads the environment. Every variable is documented in
.env.example; a test checks that the two agree."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from internal import registry

WEEK = 7 * 24 * 3600.0


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # Where each service answers: one URL per replica (comma-separated in *_SVC_URL).
    # Callers spread their calls over them; a process binds to SERVICE_BIND, or the first.
    replica_urls: Mapping[str, tuple[str, ...]]
    # host:port this process binds to, overriding its URL (set by the supervisor per replica).
    service_bind: str
    # None: each service keeps its tables in <data_dir>/<service>.db.
    database_url: str | None
    broker_url: str
    storage_url: str
    storage_public_url: str
    storage_secret: str
    mail_url: str
    mail_from: str
    max_upload_bytes: int
    max_image_pixels: int
    presigned_url_ttl_seconds: int
    # How long a presigned PUT (a conversion's PDF upload) is valid; GETs use the TTL above.
    presigned_put_ttl_seconds: int
    # Authentication (internal/auth): the HMAC key of the services' short-lived tokens, the
    # HMAC key of the users' API tokens, and the operator's bearer token. Generated into the
    # data directory on first start when unset, like the storage secret.
    service_token_secret: str
    user_token_secret: str
    operator_token: str
    service_token_ttl_seconds: int
    user_token_ttl_seconds: int
    # A job's transient failures are retried, after a backoff doubling from the min to the
    # max (with jitter), until this long after it was enqueued (or retried by hand).
    job_retry_horizon_seconds: float
    job_min_backoff_ms: int
    job_max_backoff_ms: int
    job_visibility_timeout_seconds: float
    # SQLite broker: a message claimed this often without being finished (its workers died
    # each time) is dead-lettered and its job discarded; 0 never gives up.
    job_max_deliveries: int
    # How long a failed or cancelled conversion keeps its upload, for RetryJob.
    failed_upload_retention_seconds: float
    outbox_retention_seconds: float
    rpc_timeout_seconds: float
    # How long a server waits for a request's whole body before answering deadline_exceeded,
    # plus one second for every rpc_body_min_rate_bytes received (0: no more).
    rpc_body_timeout_seconds: float
    rpc_body_min_rate_bytes: int
    # Request-body bytes a server holds at once; larger bodies wait for room before they are
    # read (mcsv.twirp's BodyBudget).
    rpc_body_budget_bytes: int
    imagemagick_timeout_seconds: float
    # ImageMagick conversions an image_svc runs at once (more wait their turn); 0: as many
    # as the machine has cores.
    imagemagick_concurrency: int
    # Where a job worker serves /metrics; the supervisor gives worker N the port + N - 1.
    worker_metrics_url: str
    # The supervisor behind `just up` restarts a crashed process after a backoff doubling from
    # the min to the max; a process that stayed up supervisor_stable_seconds starts afresh.
    # More than supervisor_max_restarts restarts within supervisor_restart_period_seconds
    # (all processes together): it gives up and stops everything.
    supervisor_min_backoff_ms: int
    supervisor_max_backoff_ms: int
    supervisor_stable_seconds: float
    supervisor_max_restarts: int
    supervisor_restart_period_seconds: float
    # Where the operator's console links to Prometheus and Grafana ("": not shown).
    prometheus_url: str = ""
    grafana_url: str = ""

    def url(self, service: str) -> str:
        """The service's (first replica's) base URL."""
        return self.replica_urls[service][0]

    def urls(self, service: str) -> tuple[str, ...]:
        return self.replica_urls[service]

    def bind(self, service: str) -> tuple[str, int]:
        """The host and port a service process listens on."""
        if self.service_bind:
            return _host_and_port(f"http://{self.service_bind}", "SERVICE_BIND")
        return _host_and_port(self.url(service), registry.BY_NAME[service].url_variable)

    def worker_metrics_bind(self) -> tuple[str, int]:
        """The host and port a job worker serves its /metrics on."""
        return _host_and_port(self.worker_metrics_url, "WORKER_METRICS_URL")

    def database_url_for(self, service: str) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / service}.db"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(_str(env, "MCSV_DATA_DIR", "var")).resolve()
    urls = {
        service.name: _url_list(
            env, service.url_variable, f"http://127.0.0.1:{service.default_port}"
        )
        for service in registry.SERVICES
    }
    return Settings(
        data_dir=data_dir,
        replica_urls=urls,
        service_bind=_str(env, "SERVICE_BIND", ""),
        database_url=_str(env, "DATABASE_URL", "") or None,
        broker_url=_str(env, "BROKER_URL", f"sqlite:///{data_dir / 'broker.db'}"),
        storage_url=_str(env, "STORAGE_URL", f"file://{data_dir / 'storage'}"),
        storage_public_url=_str(env, "STORAGE_PUBLIC_URL", urls["user_svc"][0]),
        storage_secret=_str(env, "STORAGE_SECRET", "") or _persistent_secret(data_dir),
        service_token_secret=_str(env, "SERVICE_TOKEN_SECRET", "")
        or _persistent_secret(data_dir, "service-token-secret"),
        user_token_secret=_str(env, "USER_TOKEN_SECRET", "")
        or _persistent_secret(data_dir, "user-token-secret"),
        operator_token=_str(env, "OPERATOR_TOKEN", "")
        or _persistent_secret(data_dir, "operator-token"),
        service_token_ttl_seconds=_int(env, "SERVICE_TOKEN_TTL_SECONDS", 300),
        user_token_ttl_seconds=_int(env, "USER_TOKEN_TTL_SECONDS", 30 * 24 * 3600),
        mail_url=_str(env, "MAIL_URL", "mailbox:"),
        mail_from=_str(env, "MAIL_FROM", "mcsv <no-reply@mcsv.local>"),
        max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 20 * 1024 * 1024),
        max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", 40_000_000),
        presigned_url_ttl_seconds=_int(env, "PRESIGNED_URL_TTL_SECONDS", 24 * 3600),
        presigned_put_ttl_seconds=_int(env, "PRESIGNED_PUT_TTL_SECONDS", 900),
        job_retry_horizon_seconds=_float(env, "JOB_RETRY_HORIZON_SECONDS", 3600.0),
        job_min_backoff_ms=_int(env, "JOB_MIN_BACKOFF_MS", 500),
        job_max_backoff_ms=_int(env, "JOB_MAX_BACKOFF_MS", 60_000),
        job_visibility_timeout_seconds=_float(env, "JOB_VISIBILITY_TIMEOUT_SECONDS", 60.0),
        job_max_deliveries=_int(env, "JOB_MAX_DELIVERIES", 20),
        failed_upload_retention_seconds=_float(env, "FAILED_UPLOAD_RETENTION_SECONDS", WEEK),
        outbox_retention_seconds=_float(env, "OUTBOX_RETENTION_SECONDS", WEEK),
        rpc_timeout_seconds=_float(env, "RPC_TIMEOUT_SECONDS", 30.0),
        rpc_body_timeout_seconds=_float(env, "RPC_BODY_TIMEOUT_SECONDS", 10.0),
        rpc_body_min_rate_bytes=_int(env, "RPC_BODY_MIN_RATE_BYTES", 16 * 1024),
        rpc_body_budget_bytes=_int(env, "RPC_BODY_BUDGET_BYTES", 24 * 1024 * 1024),
        imagemagick_timeout_seconds=_float(env, "IMAGEMAGICK_TIMEOUT_SECONDS", 60.0),
        imagemagick_concurrency=_int(env, "IMAGEMAGICK_CONCURRENCY", 0),
        worker_metrics_url=_str(env, "WORKER_METRICS_URL", "http://127.0.0.1:9100"),
        supervisor_min_backoff_ms=_int(env, "SUPERVISOR_MIN_BACKOFF_MS", 500),
        supervisor_max_backoff_ms=_int(env, "SUPERVISOR_MAX_BACKOFF_MS", 10_000),
        supervisor_stable_seconds=_float(env, "SUPERVISOR_STABLE_SECONDS", 30.0),
        supervisor_max_restarts=_int(env, "SUPERVISOR_MAX_RESTARTS", 10),
        supervisor_restart_period_seconds=_float(env, "SUPERVISOR_RESTART_PERIOD_SECONDS", 60.0),
        prometheus_url=_optional_url(env, "PROMETHEUS_URL"),
        grafana_url=_optional_url(env, "GRAFANA_URL"),
    )


def _host_and_port(url: str, variable: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ConfigError(f"{variable} must include a host and a port")
    return parts.hostname, parts.port


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    """A variable's value; unset and empty both mean the default."""
    return env.get(name) or default


def _url_list(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    """One or more comma-separated http(s) base URLs."""
    urls = tuple(u.strip().rstrip("/") for u in _str(env, name, default).split(",") if u.strip())
    for url in urls or ("",):
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{name}={url!r} is not an http(s) URL")
    return urls


def _optional_url(env: Mapping[str, str], name: str) -> str:
    """An http(s) URL, or "" when unset."""
    url = _str(env, name, "").strip().rstrip("/")
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{name}={url!r} is not an http(s) URL")
    return url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _persistent_secret(data_dir: Path, name: str = "storage-secret") -> str:
    """A secret kept in the data directory (data_dir/name), so that presigned URLs and tokens
    survive restarts and every local process agrees on it without configuration."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        candidate = path.with_suffix(f".{os.getpid()}.tmp")
        candidate.write_text(secrets.token_hex(32))
        candidate.chmod(0o600)
        try:
            os.link(candidate, path)  # atomic: the first process to get here wins
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return path.read_text().strip()

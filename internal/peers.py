"""The services' typed clients, built in one place from the settings. A peer is a generated
client (sync or async) of one service whose HTTP client spreads its calls over that service's
replicas (internal.rpc.balance) and traces and measures each call (internal.observability):

    with SyncPeers(settings, identity="job_svc") as peers:
        users = peers.client(UserServiceClient)
        users.get_user(user_pb2.GetUserRequest(id=user_id))

The generated clients leave an HTTP client they were handed open, so the peers keep the ones
they made and close them together (close()/aclose(), or the with blocks).

Every call carries the credential of `identity` (internal.auth.credentials): a service name
sends a fresh service token per call, "operator" sends OPERATOR_TOKEN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from mcsv.twirp import AsyncClient, SyncClient
from mcsv.v1.client_twirp import AsyncClientServiceClient, ClientServiceClient
from mcsv.v1.email_twirp import AsyncEmailServiceClient, EmailServiceClient
from mcsv.v1.image_twirp import AsyncImageServiceClient, ImageServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserServiceClient

from internal import config
from internal.auth.credentials import credentials_for
from internal.observability import TracingSyncTransport, TracingTransport
from internal.rpc.balance import BalancedSyncTransport, BalancedTransport, Replicas

SyncClientT = TypeVar("SyncClientT", bound=SyncClient)
AsyncClientT = TypeVar("AsyncClientT", bound=AsyncClient)

# The service (a name in internal.registry) that each generated client talks to.
SERVICE_OF_CLIENT: Mapping[type[SyncClient] | type[AsyncClient], str] = {
    ClientServiceClient: "client_svc",
    AsyncClientServiceClient: "client_svc",
    UserServiceClient: "user_svc",
    AsyncUserServiceClient: "user_svc",
    JobServiceClient: "job_svc",
    AsyncJobServiceClient: "job_svc",
    EmailServiceClient: "email_svc",
    AsyncEmailServiceClient: "email_svc",
    ImageServiceClient: "image_svc",
    AsyncImageServiceClient: "image_svc",
}


def async_http_client(
    replicas: Sequence[str] = (), timeout: float | None = None
) -> httpx.AsyncClient:
    """A traced HTTP client; with `replicas` (a service's base URLs) its calls are spread
    over them, whatever base URL a request names. Without, it calls the URLs it is given
    (image_svc's presigned storage URLs)."""
    inner = BalancedTransport(Replicas(replicas)) if replicas else None
    return httpx.AsyncClient(
        transport=TracingTransport(inner), timeout=timeout, follow_redirects=False
    )


def sync_http_client(replicas: Sequence[str] = (), timeout: float | None = None) -> httpx.Client:
    """The blocking twin of async_http_client."""
    inner = BalancedSyncTransport(Replicas(replicas)) if replicas else None
    return httpx.Client(
        transport=TracingSyncTransport(inner), timeout=timeout, follow_redirects=False
    )


class _Peers:
    """What both kinds of peers share: the settings, the identity whose credentials every
    call carries, and how a generated client is put together for its service."""

    def __init__(self, settings: config.Settings, *, identity: str) -> None:
        self.settings = settings
        self.identity = identity
        self._credentials = credentials_for(settings, identity)

    def _options(self, service: str, timeout: float | None) -> dict[str, Any]:
        """The generated client's arguments besides its HTTP client."""
        return {
            "timeout": timeout or self.settings.rpc_timeout_seconds,
            "credentials": self._credentials(service),
        }


class SyncPeers(_Peers):
    """Blocking peers from the settings: client() gives a service's generated client."""

    def __init__(self, settings: config.Settings, *, identity: str) -> None:
        super().__init__(settings, identity=identity)
        self._http: list[httpx.Client] = []

    def client(
        self, client_type: type[SyncClientT], *, timeout: float | None = None
    ) -> SyncClientT:
        """A client of the service `client_type` talks to, with its calls' timeout (default:
        RPC_TIMEOUT_SECONDS)."""
        service = SERVICE_OF_CLIENT[client_type]
        http = sync_http_client(self.settings.urls(service))
        self._http.append(http)
        return client_type(
            self.settings.url(service), http_client=http, **self._options(service, timeout)
        )

    def close(self) -> None:
        for http in self._http:
            http.close()
        self._http.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncPeers(_Peers):
    """asyncio peers from the settings: client() gives a service's generated client."""

    def __init__(self, settings: config.Settings, *, identity: str) -> None:
        super().__init__(settings, identity=identity)
        self._http: list[httpx.AsyncClient] = []

    def client(
        self, client_type: type[AsyncClientT], *, timeout: float | None = None
    ) -> AsyncClientT:
        """A client of the service `client_type` talks to, with its calls' timeout (default:
        RPC_TIMEOUT_SECONDS)."""
        service = SERVICE_OF_CLIENT[client_type]
        http = async_http_client(self.settings.urls(service))
        self._http.append(http)
        return client_type(
            self.settings.url(service), http_client=http, **self._options(service, timeout)
        )

    async def aclose(self) -> None:
        for http in self._http:
            await http.aclose()
        self._http.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

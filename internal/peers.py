"""The services' typed clients, built in one place from the settings. A peer is a generated
client (sync or async) of one service whose transport spreads its calls over that service's
replicas (internal.rpc.balance) and traces and measures each call (internal.observability),
both plugged in through the generated runtime's transport seam (mcsv.twirp.SyncTransport,
AsyncTransport) around its default transport (urllib3, aiohttp):

    with SyncPeers(settings, identity="job_svc") as peers:
        users = peers.client(UserServiceClient)
        users.get_user(user_pb2.GetUserRequest(id=user_id))

The generated clients leave a transport they were handed open, so the peers keep the ones
they made and close them together (close()/aclose(), or the with blocks).

Every call carries the credential of `identity` (internal.auth.credentials): a service name
sends its service token (minted per called service, cached until a third of its life is
left), "operator" sends OPERATOR_TOKEN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from mcsv.twirp import AsyncClient, AsyncTransport, SyncClient, SyncTransport
from mcsv.v1.client_twirp import AsyncClientServiceClient, ClientServiceClient
from mcsv.v1.email_twirp import AsyncEmailServiceClient, EmailServiceClient
from mcsv.v1.image_twirp import AsyncImageServiceClient, ImageServiceClient
from mcsv.v1.job_twirp import AsyncJobServiceClient, JobServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserServiceClient

from internal import config
from internal.auth.credentials import credentials_for
from internal.observability import TracedHttpxTransport, TracingSyncTransport, TracingTransport
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


def async_transport(replicas: Sequence[str]) -> AsyncTransport:
    """A traced transport for a generated async client, spreading its calls over `replicas`
    (a service's base URLs), whatever base URL the client names."""
    return TracingTransport(BalancedTransport(Replicas(replicas)))


def sync_transport(replicas: Sequence[str]) -> SyncTransport:
    """The blocking twin of async_transport."""
    return TracingSyncTransport(BalancedSyncTransport(Replicas(replicas)))


def async_http_client(timeout: float | None = None) -> httpx.AsyncClient:
    """A traced plain HTTP client, for calls that are not a generated client's: the
    console's readiness probes."""
    return httpx.AsyncClient(
        transport=TracedHttpxTransport(), timeout=timeout, follow_redirects=False
    )


class _Peers:
    """What both kinds of peers share: the settings, the identity whose credentials every
    call carries, and how a generated client is put together for its service."""

    def __init__(self, settings: config.Settings, *, identity: str) -> None:
        self.settings = settings
        self.identity = identity
        self._credentials = credentials_for(settings, identity)

    def _options(self, service: str, timeout: float | None) -> dict[str, Any]:
        """The generated client's arguments besides its transport."""
        return {
            "timeout": timeout or self.settings.rpc_timeout_seconds,
            "credentials": self._credentials(service),
        }


class SyncPeers(_Peers):
    """Blocking peers from the settings: client() gives a service's generated client."""

    def __init__(self, settings: config.Settings, *, identity: str) -> None:
        super().__init__(settings, identity=identity)
        self._transports: list[SyncTransport] = []

    def client(
        self, client_type: type[SyncClientT], *, timeout: float | None = None
    ) -> SyncClientT:
        """A client of the service `client_type` talks to, with its calls' timeout (default:
        RPC_TIMEOUT_SECONDS)."""
        service = SERVICE_OF_CLIENT[client_type]
        transport = sync_transport(self.settings.urls(service))
        self._transports.append(transport)
        return client_type(
            self.settings.url(service), transport=transport, **self._options(service, timeout)
        )

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

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
        self._transports: list[AsyncTransport] = []

    def client(
        self, client_type: type[AsyncClientT], *, timeout: float | None = None
    ) -> AsyncClientT:
        """A client of the service `client_type` talks to, with its calls' timeout (default:
        RPC_TIMEOUT_SECONDS)."""
        service = SERVICE_OF_CLIENT[client_type]
        transport = async_transport(self.settings.urls(service))
        self._transports.append(transport)
        return client_type(
            self.settings.url(service), transport=transport, **self._options(service, timeout)
        )

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()
        self._transports.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

"""Runtime for the generated Twirp code: errors and encodings, the clients' base classes
(client.py) on their HTTP transports (transport.py: the interface; http11.py: the defaults, on
httptools; alternatives.py: on http.client, urllib3, aiohttp; or your own) and the ASGI server
(server.py, on the standard library)."""

from .alternatives import AiohttpTransport, HttpClientTransport, Urllib3Transport
from .client import AsyncClient, Credentials, SyncClient
from .codec import JSON, PROTOBUF
from .context import Context, ContextKey, ServerContext
from .errors import ErrorCode, TwirpError
from .hooks import ServerHooks
from .http11 import HttptoolsSyncTransport, HttptoolsTransport
from .server import (
    DEFAULT_BODY_MIN_RATE,
    DEFAULT_BODY_READ_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    TwirpApp,
)
from .transport import (
    AsyncTransport,
    ConnectFailed,
    HTTPRequest,
    HTTPResponse,
    SyncTransport,
    TimedOut,
    TransportError,
)

__all__ = [
    "DEFAULT_BODY_MIN_RATE",
    "DEFAULT_BODY_READ_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "JSON",
    "PROTOBUF",
    "AiohttpTransport",
    "AsyncClient",
    "AsyncTransport",
    "ConnectFailed",
    "Context",
    "ContextKey",
    "Credentials",
    "ErrorCode",
    "HTTPRequest",
    "HTTPResponse",
    "HttpClientTransport",
    "HttptoolsSyncTransport",
    "HttptoolsTransport",
    "ServerContext",
    "ServerHooks",
    "SyncClient",
    "SyncTransport",
    "TimedOut",
    "TransportError",
    "TwirpApp",
    "TwirpError",
    "Urllib3Transport",
]

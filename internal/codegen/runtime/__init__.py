"""Runtime for the generated Twirp code: errors and encodings, the clients' base classes
(client.py) on their HTTP transports (transport.py: http.client, httptools, or your own) and the
ASGI server (server.py, on the standard library)."""

from .client import AsyncClient, Credentials, SyncClient
from .codec import JSON, PROTOBUF
from .context import Context, ContextKey, ServerContext
from .errors import ErrorCode, TwirpError
from .hooks import ServerHooks
from .server import DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, TwirpApp
from .transport import (
    AiohttpTransport,
    AsyncTransport,
    ConnectFailed,
    HttpClientTransport,
    HTTPRequest,
    HTTPResponse,
    HttptoolsTransport,
    SyncTransport,
    TimedOut,
    TransportError,
    Urllib3Transport,
)

__all__ = [
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

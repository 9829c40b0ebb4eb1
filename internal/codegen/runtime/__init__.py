"""Runtime for the generated Twirp code: errors and encodings, the HTTP client transports
(client.py, on httpx) and the ASGI server (server.py, on the standard library)."""

from .client import AsyncClient, Credentials, SyncClient
from .codec import JSON, PROTOBUF
from .context import Context, ContextKey, ServerContext
from .errors import ErrorCode, TwirpError
from .hooks import ServerHooks
from .server import DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, TwirpApp

__all__ = [
    "DEFAULT_BODY_READ_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "JSON",
    "PROTOBUF",
    "AsyncClient",
    "Context",
    "ContextKey",
    "Credentials",
    "ErrorCode",
    "ServerContext",
    "ServerHooks",
    "SyncClient",
    "TwirpApp",
    "TwirpError",
]

"""Client runtime for the generated Twirp code: errors, encodings and HTTP transports."""

from .client import AsyncClient, SyncClient
from .codec import JSON, PROTOBUF
from .context import Context
from .errors import ErrorCode, TwirpError

__all__ = ["JSON", "PROTOBUF", "AsyncClient", "Context", "ErrorCode", "SyncClient", "TwirpError"]

"""Serving generated Twirp servers: an ASGI app on the `twirp` runtime with the wire
behaviour of the reference Go implementation."""

from .server import DEFAULT_MAX_BODY_BYTES, TwirpApp

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TwirpApp"]

"""Server hooks: what TwirpApp tells an observer about each request, in order.

Subclass ServerHooks and override the methods you need; give instances to
TwirpApp(..., hooks=[...]). Every hook runs on the event loop, with the request's context.

  request_received(ctx)    always, first
  request_routed(ctx)      once the request reached an RPC (service and method known)
  response_prepared(ctx)   the handler answered; the response is about to be encoded
  error(ctx, error)        the request is answered with this Twirp error
  response_sent(ctx)       always, last: after the answer, or when the request was abandoned

request_received, request_routed and response_prepared may reject the request by raising
TwirpError (any other exception is an internal error). An exception from error or
response_sent is logged and does not change the answer.
"""

from __future__ import annotations

from .context import ServerContext
from .errors import TwirpError


class ServerHooks:
    """Does nothing at each step; subclasses override what they observe."""

    def request_received(self, ctx: ServerContext) -> None:
        """The request arrived; only its method, path and headers are known."""

    def request_routed(self, ctx: ServerContext) -> None:
        """The request names an RPC of a served service with a known Content-Type."""

    def response_prepared(self, ctx: ServerContext) -> None:
        """The handler returned a response of its declared type."""

    def error(self, ctx: ServerContext, error: TwirpError) -> None:
        """The request is answered with `error` (ctx.status is its HTTP status)."""

    def response_sent(self, ctx: ServerContext) -> None:
        """The answer was sent (ctx.status), or the request was abandoned (ctx.status None)."""

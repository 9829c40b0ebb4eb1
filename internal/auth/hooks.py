"""The one place RPCs are authenticated and authorized: a ServerHooks subclass that every
service app installs (internal.services.common.app). No credential, or one that does not
verify, is unauthenticated (401); a valid one the allow-list does not name for the RPC is
permission_denied (403)."""

from __future__ import annotations

import contextlib

from mcsv.twirp import ErrorCode, ServerContext, ServerHooks, TwirpError

from internal import config
from internal.auth import policy, tokens


class AuthHooks(ServerHooks):
    """Checks each routed request of the service `audience` against policy.ALLOWED."""

    def __init__(self, settings: config.Settings, audience: str) -> None:
        self.settings = settings
        self.audience = audience

    def request_routed(self, ctx: ServerContext) -> None:
        rpc = f"{ctx.service_name}/{ctx.method_name}"
        token = bearer(ctx.headers.get("authorization", ""))
        if policy.allowed(rpc, None):
            self._remember(ctx, token)  # public: a valid credential still says who calls
            return
        if not token:
            raise TwirpError(ErrorCode.UNAUTHENTICATED, "a bearer credential is required")
        try:
            principal = tokens.verify(self.settings, token, self.audience)
        except tokens.InvalidCredential:
            raise TwirpError(ErrorCode.UNAUTHENTICATED, "the credential is not valid") from None
        if not policy.allowed(rpc, principal):
            raise TwirpError(
                ErrorCode.PERMISSION_DENIED, f"{principal.grant} may not call {ctx.method_name}"
            )
        ctx.set(policy.PRINCIPAL_KEY, principal)

    def _remember(self, ctx: ServerContext, token: str) -> None:
        if token:
            with contextlib.suppress(tokens.InvalidCredential):
                ctx.set(policy.PRINCIPAL_KEY, tokens.verify(self.settings, token, self.audience))


def bearer(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when there is none)."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""

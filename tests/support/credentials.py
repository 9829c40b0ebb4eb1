"""Credentials for tests that call RPCs over the wire: one the allow-list admits for an RPC
(internal.auth.policy), made from the system's settings as the services make theirs."""

from __future__ import annotations

from internal import config
from internal.auth import OPERATOR, PUBLIC, USER, tokens
from internal.auth.policy import ALLOWED


def service_of(rpc: str) -> str:
    """The process serving an RPC: "mcsv.v1.UserService/GetUser" → "user_svc"."""
    return rpc.split("/")[0].removeprefix("mcsv.v1.").removesuffix("Service").lower() + "_svc"


def allowed_token(settings: config.Settings, rpc: str, user_id: str = "u-fuzz") -> str | None:
    """A token the allow-list admits for `rpc` ("mcsv.v1.Service/Method"); None when public."""
    grants = ALLOWED[rpc]
    if PUBLIC in grants:
        return None
    if OPERATOR in grants:
        return settings.operator_token
    if USER in grants:
        return tokens.user_token(settings, user_id)
    caller = sorted(grants)[0]
    return tokens.service_token(settings, caller, service_of(rpc))


def allowed_headers(settings: config.Settings, rpc: str) -> dict[str, str]:
    """The Authorization header of allowed_token, or none."""
    token = allowed_token(settings, rpc)
    return {"Authorization": f"Bearer {token}"} if token else {}

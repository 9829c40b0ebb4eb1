"""The allow-list: which caller may call each RPC, as one table, and the Principal a request
was authenticated as (set on the request's context by the hook, read by handlers that show
a user only their own data).

A grant is PUBLIC (anyone, no credential), OPERATOR (OPERATOR_TOKEN), USER (any user's API
token; the handler then limits it to the user's own data) or a service name (that service's
token; job_svc's workers carry job_svc's). An RPC missing from the table is refused to all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcsv.twirp import Context

PUBLIC = "public"
OPERATOR = "operator"
USER = "user"

PRINCIPAL_KEY = "mcsv.auth.principal"

ALLOWED: Mapping[str, frozenset[str]] = {
    f"mcsv.v1.{rpc}": frozenset(grants)
    for rpc, grants in {
        # rpc                                  who may call it
        "ClientService/ReceiveNotification": {"user_svc"},
        "ClientService/ListNotifications": {OPERATOR, "user_svc", "job_svc"},
        "UserService/CreateUser": {PUBLIC},
        "UserService/GetUser": {USER, OPERATOR},
        "UserService/ConvertImage": {USER},
        "UserService/GetConversion": {USER, OPERATOR, "job_svc"},  # a worker checks it
        "UserService/NotifyEmailDelivered": {"job_svc"},
        "UserService/ConversionComplete": {"job_svc"},
        "UserService/ListConversions": {OPERATOR},  # the console
        "JobService/EnqueueEmail": {"user_svc"},
        "JobService/EnqueueConversion": {"user_svc"},
        "JobService/GetJob": {OPERATOR},
        "JobService/ListJobs": {OPERATOR},
        "JobService/CancelJob": {OPERATOR},
        "JobService/RetryJob": {OPERATOR},
        "JobService/GetQueueStats": {OPERATOR},
        "EmailService/DeliverEmail": {"job_svc"},
        "EmailService/ListEmails": {OPERATOR},
        "EmailService/GetEmail": {OPERATOR},
        "ImageService/ConvertToPdf": {"job_svc"},
    }.items()
}


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: kind "service" (name: the service), USER (name: the user
    id) or OPERATOR."""

    kind: str
    name: str

    @property
    def grant(self) -> str:
        """The name this caller has in ALLOWED."""
        return self.name if self.kind == "service" else self.kind


def allowed(rpc: str, principal: Principal | None) -> bool:
    """Whether `principal` (None: no credential) may call `rpc` ("mcsv.v1.Service/Method")."""
    grants = ALLOWED.get(rpc, frozenset())
    return PUBLIC in grants or (principal is not None and principal.grant in grants)


def caller(ctx: Context) -> Principal | None:
    """Who the request was authenticated as (None on a public RPC called without one)."""
    found: Any = ctx.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


def may_see(ctx: Context, user_id: str) -> bool:
    """Whether the caller may see this user's data: the user themselves, or the operator or
    a service the allow-list admitted for the RPC."""
    who = caller(ctx)
    return who is not None and (who.kind != USER or who.name == user_id)

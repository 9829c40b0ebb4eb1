"""The operator's web pages (email_svc's /mailbox): only for the operator. A browser signs
in once through <prefix>/login?token=<OPERATOR_TOKEN> (`just up` prints that link): the token
is checked, a cookie set (HttpOnly, SameSite=Strict, holding an HMAC of the token, not the
token) and the browser sent on to the page without the token in its address. Scripts may
send `Authorization: Bearer <OPERATOR_TOKEN>` instead."""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable, Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from internal import config
from internal.auth.hooks import bearer

COOKIE = "mcsv_operator"
SESSION_HOURS = 12

Endpoint = Callable[[Request], Response | Awaitable[Response]]


def login_url(settings: config.Settings, page_url: str) -> str:
    """The link that signs a browser in to the operator page at page_url."""
    return f"{page_url.rstrip('/')}/login?token={settings.operator_token}"


def operator_pages(
    settings: config.Settings, prefix: str, routes: Sequence[BaseRoute]
) -> list[BaseRoute]:
    """`routes` (under `prefix`) open to the operator only, and the prefix's /login."""
    session = _session(settings)

    async def login(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not hmac.compare_digest(token.encode(), settings.operator_token.encode()):
            return _refused()
        signed_in = RedirectResponse(prefix, status_code=303)
        signed_in.set_cookie(
            COOKIE, session, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
            path=prefix,
        )  # fmt: skip
        return signed_in

    def guard(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            cookie = request.cookies.get(COOKIE, "")
            token = bearer(request.headers.get("authorization", ""))
            if not (
                hmac.compare_digest(cookie.encode(), session.encode())
                or hmac.compare_digest(token.encode(), settings.operator_token.encode())
            ):
                return _refused()
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(request)  # type: ignore[no-any-return]
            answer = await run_in_threadpool(endpoint, request)
            return await answer if inspect.isawaitable(answer) else answer

        return guarded

    guarded_routes: list[BaseRoute] = [Route(f"{prefix}/login", login)]
    for route in routes:
        if not isinstance(route, Route):
            raise TypeError(f"operator_pages guards plain routes, not {route!r}")
        guarded_routes.append(Route(route.path, guard(route.endpoint), methods=route.methods))
    return guarded_routes


def _session(settings: config.Settings) -> str:
    """The cookie's value: derived from the operator token, so rotating it signs all out."""
    return hmac.new(settings.operator_token.encode(), b"operator pages", hashlib.sha256).hexdigest()


def _refused() -> Response:
    return PlainTextResponse(
        "401: operator only. Sign in with the link `just up` printed (<page>/login?token=...).",
        status_code=401,
    )

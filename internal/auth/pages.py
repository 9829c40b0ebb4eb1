"""The operator's web pages (email_svc's /mailbox, the console): only for the operator. A
browser signs in once at <prefix>/login: a form POSTing OPERATOR_TOKEN, or the link `just up`
prints, <prefix>/login#token=<OPERATOR_TOKEN>, whose fragment a browser never sends to any
server (the login page's script posts it, so it is in no request line or log). The older
<prefix>/login?token=... still works. The token is checked, a cookie set (HttpOnly,
SameSite=Strict, holding an HMAC of the token, not the token) and the browser sent on to the
page. Scripts may send `Authorization: Bearer <OPERATOR_TOKEN>` instead."""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from internal import config
from internal.auth.hooks import bearer

COOKIE = "mcsv_operator"
SESSION_HOURS = 12
MAX_LOGIN_BODY = 4096

Endpoint = Callable[[Request], Response | Awaitable[Response]]


def login_url(settings: config.Settings, page_url: str) -> str:
    """The link that signs a browser in to the operator page at page_url. The token is in
    the fragment: browsers keep it to themselves (the login page's script posts it)."""
    return f"{page_url.rstrip('/')}/login#token={settings.operator_token}"


def is_operator(settings: config.Settings, headers: Mapping[str, str]) -> bool:
    """Whether a request's headers (lower-case names) carry the operator's session cookie
    or bearer token."""
    cookie = _cookie(headers.get("cookie", ""))
    token = bearer(headers.get("authorization", ""))
    return hmac.compare_digest(cookie.encode(), _session(settings).encode()) or (
        bool(token) and hmac.compare_digest(token.encode(), settings.operator_token.encode())
    )


def operator_pages(
    settings: config.Settings, prefix: str, routes: Sequence[BaseRoute]
) -> list[BaseRoute]:
    """`routes` (under `prefix`) open to the operator only, and the prefix's /login."""
    session = _session(settings)

    def signed_in() -> Response:
        answer = RedirectResponse(prefix, status_code=303)
        answer.set_cookie(
            COOKIE, session, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
            path=prefix,
        )  # fmt: skip
        return answer

    async def login(request: Request) -> Response:
        if request.method == "POST":
            body = await request.body()
            fields = parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))
            token = (fields.get("token") or [""])[0].strip()
        else:
            token = request.query_params.get("token", "")
            if not token:
                return HTMLResponse(_login_page(prefix))
        if not hmac.compare_digest(token.encode(), settings.operator_token.encode()):
            return _refused()
        return signed_in()

    def guard(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if not is_operator(settings, request.headers):
                return _refused()
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(request)  # type: ignore[no-any-return]
            answer = await run_in_threadpool(endpoint, request)
            return await answer if inspect.isawaitable(answer) else answer

        return guarded

    guarded_routes: list[BaseRoute] = [Route(f"{prefix}/login", login, methods=["GET", "POST"])]
    for route in routes:
        if not isinstance(route, Route):
            raise TypeError(f"operator_pages guards plain routes, not {route!r}")
        guarded_routes.append(Route(route.path, guard(route.endpoint), methods=route.methods))
    return guarded_routes


def _cookie(header: str) -> str:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def _session(settings: config.Settings) -> str:
    """The cookie's value: derived from the operator token, so rotating it signs all out."""
    return hmac.new(settings.operator_token.encode(), b"operator pages", hashlib.sha256).hexdigest()


def _login_page(prefix: str) -> str:
    """A form for the token; a token in the address's fragment is posted by the script."""
    return f"""<!doctype html><html lang=en><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>mcsv operator sign-in</title>
<body style="font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem">
<h1>Operator sign-in</h1>
<form id=login method=post action="{prefix}/login">
<label>OPERATOR_TOKEN<br><input name=token type=password autocomplete=off required
 style="width:100%;padding:.5rem"></label>
<p><button type=submit style="padding:.5rem 1rem">Sign in</button></p></form>
<p>The token is in $MCSV_DATA_DIR/operator-token unless OPERATOR_TOKEN is set.</p>
<script>
const m = location.hash.match(/token=([^&]+)/);
if (m) {{
  history.replaceState(null, "", location.pathname);
  const f = document.getElementById("login");
  f.token.value = decodeURIComponent(m[1]);
  f.submit();
}}
</script>
"""


def _refused() -> Response:
    return PlainTextResponse(
        "401: operator only. Sign in at <page>/login with OPERATOR_TOKEN "
        "(or the link `just up` printed).",
        status_code=401,
    )

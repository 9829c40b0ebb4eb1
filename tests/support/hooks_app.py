"""The echo servers on a TwirpApp with a recording hook, to check what hooks are told and in
which order. Each request names itself with the header x-request-id; GET /events/<id> answers
the steps recorded for it as a JSON list. Headers steer the hook:
  x-reject-at: <step>    the hook raises TwirpError(permission_denied) at that step
  x-crash-at: <step>     the hook raises RuntimeError at that step
  x-tag: <value>         response_prepared adds the response header x-tag: <value>
"""

from __future__ import annotations

from mcsv.twirp import ContextKey, ErrorCode, ServerContext, ServerHooks, TwirpApp, TwirpError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tests.support.echo_app import servers

EVENTS: dict[str, list[str]] = {}


class Recorder(ServerHooks):
    def _record(self, ctx: ServerContext, step: str, detail: str = "") -> None:
        request_id = ctx.headers.get("x-request-id", "")
        EVENTS.setdefault(request_id, []).append(f"{step}:{detail}" if detail else step)
        if ctx.headers.get("x-reject-at") == step:
            raise TwirpError(ErrorCode.PERMISSION_DENIED, f"rejected at {step}")
        if ctx.headers.get("x-crash-at") == step:
            raise RuntimeError(f"the hook crashed at {step}")

    def request_received(self, ctx: ServerContext) -> None:
        self._record(ctx, "request_received", str(ctx.get(ContextKey.REQUEST_PATH)))

    def request_routed(self, ctx: ServerContext) -> None:
        self._record(ctx, "request_routed", f"{ctx.service_name}/{ctx.method_name}")

    def response_prepared(self, ctx: ServerContext) -> None:
        if tag := ctx.headers.get("x-tag"):
            ctx.response_headers["x-tag"] = tag
        self._record(ctx, "response_prepared")

    def error(self, ctx: ServerContext, error: TwirpError) -> None:
        self._record(ctx, "error", f"{error.code}/{ctx.status}")

    def response_sent(self, ctx: ServerContext) -> None:
        self._record(ctx, "response_sent", str(ctx.status))


async def events(request: Request) -> JSONResponse:
    return JSONResponse(EVENTS.get(request.path_params["request_id"], []))


async def health(_: Request) -> JSONResponse:
    return JSONResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/events/{request_id}", events),
        Mount("/", app=TwirpApp(*servers(), hooks=[Recorder()])),
    ]
)

"""A stand-in for what sits between a Twirp client and its server (proxies, load balancers,
gateways): every POST under /twirp/ answers with what its header x-proxy-answer names.

  x-proxy-answer: <name>   one of ANSWERS (a non-Twirp HTTP answer), or
                  slow     waits SLOW_SECONDS (or until the client leaves), then answers
                           a valid empty CreateUserResponse
                  echo     a Twirp JSON error (failed_precondition) whose meta holds the
                           request's headers named in ECHOED_HEADERS (each header's values
                           comma-joined, so that a header sent twice shows)

GET /health answers 200; GET /posts answers how many POSTs arrived so far; GET or POST
/moved (the target of the redirect) answers a valid empty response, so that a client that
follows the redirect succeeds instead of failing.
"""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SLOW_SECONDS = 5.0
REDIRECT_LOCATION = "/moved?from=twirp"
EMPTY_PROTOBUF = b""  # the encoding of any empty message


class Answer:
    """One canned non-Twirp answer."""

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(
            self.body, status_code=self.status, headers=self.headers, media_type=self.content_type
        )


ANSWERS: dict[str, Answer] = {
    "502-html": Answer(
        502,
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        "text/html",
    ),
    "503-text": Answer(503, b"no healthy upstream", "text/plain"),
    "504-empty": Answer(504, b""),
    "429-text": Answer(429, b"Too Many Requests", "text/plain"),
    "401-text": Answer(401, b"Unauthorized", "text/plain", {"WWW-Authenticate": "Bearer"}),
    "403-text": Answer(403, b"Forbidden", "text/plain"),
    "404-text": Answer(404, b"404 page not found", "text/plain"),
    "400-text": Answer(400, b"400 Bad Request: malformed Host header", "text/plain"),
    "418-text": Answer(418, b"I'm a teapot", "text/plain"),
    "302-redirect": Answer(302, b"", None, {"Location": REDIRECT_LOCATION}),
    "500-json-without-code": Answer(
        500, b'{"error":"internal server error","status":500}', "application/json"
    ),
    "500-json-invalid-code": Answer(500, b'{"code":"not_a_code","msg":"x"}', "application/json"),
    # A gateway's own JSON error: "code" is a string, but the object has a field a Twirp error
    # does not have, so the reference client does not read it as a Twirp error.
    "429-json-of-the-gateway": Answer(
        429, b'{"code":"rate_limited","message":"slow down"}', "application/json"
    ),
    "200-html": Answer(200, b"<html><body>Welcome to nginx!</body></html>", "text/html"),
    "200-undecodable-protobuf": Answer(200, b"\x0a\x05ab", "application/protobuf"),
    "200-undecodable-json": Answer(200, b"<html>not json</html>", "application/json"),
}

_posts = {"count": 0}
ECHOED_HEADERS = ("x-request-id", "x-client", "content-type", "accept")


async def twirp(request: Request) -> Response:
    _posts["count"] += 1
    await request.body()
    name = request.headers.get("x-proxy-answer", "")
    if name == "slow":
        # gives up once the client has gone, so that the server shuts down without waiting
        deadline = asyncio.get_running_loop().time() + SLOW_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            if await request.is_disconnected():
                return Response(status_code=499)
            await asyncio.sleep(0.05)
        return Response(EMPTY_PROTOBUF, media_type="application/protobuf")
    if name == "echo":
        # every value of each header, so that a header sent twice shows
        meta = {key: ", ".join(request.headers.getlist(key)) for key in ECHOED_HEADERS}
        body = {"code": "failed_precondition", "msg": "headers echoed", "meta": meta}
        return Response(json.dumps(body), status_code=412, media_type="application/json")
    answer = ANSWERS.get(name)
    if answer is None:
        return PlainTextResponse(f"unknown x-proxy-answer {name!r}", status_code=599)
    return answer.response()


async def moved(_: Request) -> Response:
    return Response(EMPTY_PROTOBUF, media_type="application/protobuf")


async def posts(_: Request) -> JSONResponse:
    return JSONResponse({"posts": _posts["count"]})


async def health(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/posts", posts),
        Route("/moved", moved, methods=["GET", "POST"]),
        Route("/twirp/{path:path}", twirp, methods=["POST"]),
    ]
)

"""A service's API docs: Swagger UI at /docs over its generated OpenAPI document (gen/mcsv/v1/
<service>_service.openapi.json, served at /docs/openapi.json), with the assets of the
swagger-ui-bundle package (no CDN). "Try it out" calls the running service itself (Twirp
JSON, same origin): the document is served as generated plus what only the running system
knows: this service as its server, the bearer scheme (a user's API token or OPERATOR_TOKEN,
entered with Authorize) and who may call each RPC (internal.auth.policy)."""

from __future__ import annotations

import copy
import html
import json
from importlib import resources
from typing import Any

import swagger_ui_bundle  # type: ignore[import-untyped]  # ships no type information
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from internal.auth import policy

ASSETS = "/docs/assets"
SCHEME = "bearer"


def openapi_document(service: str) -> dict[str, Any] | None:
    """The generated document of a service's contract (None: the service has none)."""
    name = f"{service.removesuffix('_svc')}_service.openapi.json"
    found = resources.files("mcsv.v1") / name
    if not found.is_file():
        return None
    loaded: dict[str, Any] = json.loads(found.read_text())
    return loaded


def served_document(generated: dict[str, Any]) -> dict[str, Any]:
    """The generated document with this service as its server, the bearer scheme, and each
    RPC's callers from the allow-list (public RPCs need no credential)."""
    document = copy.deepcopy(generated)
    document["servers"] = [{"url": "/", "description": "this service (Twirp JSON)"}]
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A user's API token (CreateUser answers it) or OPERATOR_TOKEN.",
    }
    for path, operations in document.get("paths", {}).items():
        grants = policy.ALLOWED.get(path.removeprefix("/twirp/"), frozenset())
        for operation in operations.values():
            if policy.PUBLIC in grants:
                operation["security"] = []
                who = "anyone (no credential)"
            else:
                operation["security"] = [{SCHEME: []}]
                who = ", ".join(sorted(grants)) or "nobody"
            operation["description"] = (
                f"{operation.get('description', '')}\n\nWho may call it: {who}."
            ).strip()
    return document


def docs_routes(service: str) -> list[BaseRoute]:
    """/docs, /docs/openapi.json and the Swagger UI assets; none for a service without a
    contract."""
    generated = openapi_document(service)
    if generated is None:
        return []
    document = served_document(generated)
    title = document.get("info", {}).get("title", service)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    async def page(_: Request) -> Response:
        return HTMLResponse(_swagger_page(f"{service}: {title}"))

    return [
        Route("/docs", page),
        Route("/docs/openapi.json", openapi),
        Mount(ASSETS, app=StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)),
    ]


def _swagger_page(title: str) -> str:
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>{html.escape(title)} API</title>
<link rel=stylesheet href="{ASSETS}/swagger-ui.css">
<link rel=icon href="{ASSETS}/favicon-32x32.png"></head>
<body><div id=swagger-ui></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/docs/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  supportedSubmitMethods: ["post"],
}});
</script></body></html>
"""

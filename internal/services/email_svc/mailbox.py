"""The mailbox as web pages: /mailbox lists the newest emails, /mailbox/<id> shows one
(/mailbox/<id>.txt as text). The pages are plain functions, which Starlette runs in its thread
pool: they read the database."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from mcsv.twirp import TwirpError
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from internal.services.email_svc.models import EmailRow
from internal.services.email_svc.service import EmailService


def mailbox_routes(service: EmailService) -> Sequence[BaseRoute]:
    """The mailbox as web pages: /mailbox lists the newest emails, /mailbox/<id> shows one."""

    def inbox(request: Request) -> Response:
        rows, _ = service.page(request.query_params.get("recipient", ""), "", 200, 0)
        items = "\n".join(
            f"<tr><td>{_when(row)}</td><td>{html.escape(row.recipient)}</td>"
            f'<td><a href="/mailbox/{row.id}">{html.escape(row.subject)}</a></td></tr>'
            for row in rows
        )
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>mcsv mailbox</title>"
            "<body style='font-family:sans-serif'><h1>Mailbox</h1>"
            f"<p>{len(rows)} newest emails</p><table cellpadding=4>"
            f"<tr><th>Delivered</th><th>To</th><th>Subject</th></tr>{items}</table>"
        )

    def show(request: Request) -> Response:
        email_id = request.path_params["email_id"]
        try:
            row = service.get(email_id.removesuffix(".txt"))
        except TwirpError:
            return PlainTextResponse(f"no email {email_id}", status_code=404)
        if email_id.endswith(".txt"):
            return PlainTextResponse(
                f"Subject: {row.subject}\nTo: {row.recipient}\n\n{row.text_body}"
            )
        return HTMLResponse(row.html_body)

    return [Route("/mailbox", inbox), Route("/mailbox/{email_id}", show)]


def _when(row: EmailRow) -> str:
    if row.delivered_at is None:
        return "sending"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.delivered_at))

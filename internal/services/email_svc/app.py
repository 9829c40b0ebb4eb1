"""email_svc's app: the EmailService RPCs, delivering to the mailbox or over SMTP as MAIL_URL
says, and the mailbox pages."""

from __future__ import annotations

from mcsv.v1.email_twirp_server import EmailServiceServer
from starlette.applications import Starlette

from internal import config, mail
from internal.auth.pages import operator_pages
from internal.data import create_tables, open_database
from internal.services.common.app import service_app
from internal.services.common.readiness import database_probe
from internal.services.email_svc.mailbox import mailbox_routes
from internal.services.email_svc.models import NAME, EmailRow
from internal.services.email_svc.service import EmailService


def transport_from_settings(settings: config.Settings) -> mail.SmtpTransport | None:
    if settings.mail_url in ("mailbox:", "mailbox"):
        return None
    try:
        return mail.smtp_transport_from_url(settings.mail_url)
    except ValueError as exc:
        raise config.ConfigError(f"MAIL_URL: {exc}") from exc


def create_app(settings: config.Settings) -> Starlette:
    database = open_database(settings.database_url_for(NAME))
    create_tables(database, [EmailRow], service=NAME)
    service = EmailService(database, transport_from_settings(settings), settings.mail_from)

    return service_app(
        NAME,
        settings,
        [EmailServiceServer(service=service)],
        ready_checks={"database": database_probe(database, EmailRow)},
        routes=operator_pages(settings, "/mailbox", mailbox_routes(service)),
    )

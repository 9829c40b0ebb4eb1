"""Email for email_svc: rendering the templates and delivering over SMTP."""

from internal.mail.render import (
    RenderedEmail,
    TemplateError,
    check,
    render,
    required_variables,
)
from internal.mail.smtp import (
    DeliveryError,
    OutgoingEmail,
    SmtpTransport,
    build_message,
    smtp_transport_from_url,
)

__all__ = [
    "DeliveryError",
    "OutgoingEmail",
    "RenderedEmail",
    "SmtpTransport",
    "TemplateError",
    "build_message",
    "check",
    "render",
    "required_variables",
    "smtp_transport_from_url",
]
